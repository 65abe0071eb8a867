"""pytest plugin (registered through the ``pytest11`` entry point): fixtures for your own tests.

- ``wachat_server``: a running :class:`~wachat_async.testing.FakeWachat` accepting the key
  ``"test-key"`` (async fixture; needs pytest-asyncio or another asyncio plugin).
- ``wachat``: an :class:`~wachat_async.AsyncWachat` pointed at it, closed afterwards.
- ``wachat_server_thread``: the fake server on a thread of its own, for synchronous code
  (``Wachat``, Django views, Celery tasks).
- ``customer``: a :class:`~wachat_async.testing.Customer` of a connected instance of
  ``wachat_server`` (``customer.instance`` is its API name: point your bot's webhook there),
  for conversation tests: ``await customer.send("menu")``, ``await customer.expect_reply()``,
  ``await customer.choose("track")``. The bot may be async or sync (a Flask or Django app on
  a thread, with ``Wachat``): the customer only speaks HTTP to the sandbox.

Importing this module costs nothing: the fake server loads only when a fixture is used, so
installing the library never slows down or breaks an unrelated pytest run.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from wachat_async import AsyncWachat
    from wachat_async.testing import Customer, FakeWachat

TEST_KEY = "test-key"
#: The ``customer`` fixture's number.
CUSTOMER_NUMBER = "628100000001"


F = TypeVar("F", bound=Callable[..., Any])


@pytest.hookimpl(tryfirst=True)
def pytest_configure() -> None:
    """Spare every run pytest-asyncio's warning that ``asyncio_default_fixture_loop_scope`` is
    unset: it is about a future change of default that no fixture here depends on (they are all
    function-scoped). The option itself is left alone; a project that sets it sees no change."""
    warnings.filterwarnings(
        "ignore",
        message='The configuration option "asyncio_default_fixture_loop_scope" is unset',
        category=pytest.PytestDeprecationWarning,
    )


def _async_fixture(fn: F) -> F:
    """pytest-asyncio's fixture decorator when installed (needed in its strict mode)."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - another asyncio plugin may handle it
        return pytest.fixture(fn)  # type: ignore[return-value]
    return pytest_asyncio.fixture(fn)  # type: ignore[return-value]


@_async_fixture
async def wachat_server() -> AsyncIterator[FakeWachat]:
    from wachat_async.testing import FakeWachat

    async with FakeWachat(api_keys={TEST_KEY}) as server:
        yield server


@_async_fixture
async def wachat(wachat_server: FakeWachat) -> AsyncIterator[AsyncWachat]:
    from wachat_async import AsyncWachat

    async with AsyncWachat(TEST_KEY, base_url=wachat_server.base_url, settle_delay=0.2) as client:
        yield client


@pytest.fixture
def wachat_server_thread() -> Iterator[FakeWachat]:
    from wachat_async.testing import FakeWachat

    with FakeWachat.in_thread(api_keys={TEST_KEY}) as server:
        yield server


@_async_fixture
async def customer(wachat_server: FakeWachat, wachat: AsyncWachat) -> AsyncIterator[Customer]:
    from wachat_async.testing import Customer

    created = await wachat.instances.create("bot_under_test")
    name = created.instance.api_instance_name
    wachat_server.scan(name)
    async with Customer(wachat_server.control_url, name, CUSTOMER_NUMBER) as talker:
        yield talker
