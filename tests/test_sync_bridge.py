"""The one bridge: any async method becomes a blocking one, with nothing listed by hand."""

from __future__ import annotations

import _thread
import asyncio
import inspect
import threading
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest

from tests.conftest import FAST_RETRY, KEY
from wachat_async import AsyncWachat, Wachat, _loop_thread, sync
from wachat_async._help import blocking_doc, public_methods
from wachat_async.testing import FakeWachat, Fault


class AsyncToy:
    """An async group the facade has never heard of."""

    def __init__(self) -> None:
        self.closed_on: list[str] = []
        self.release = asyncio.Event()

    async def add(self, a: int, b: int = 1, *, scale: int = 1) -> tuple[int, str]:
        """Add; ``await toy.add(1)`` in async code."""
        return (a + b) * scale, threading.current_thread().name

    async def count(self, n: int) -> AsyncGenerator[int, None]:
        """Count up to ``n``."""
        try:
            for i in range(n):
                yield i
        finally:
            self.closed_on.append(threading.current_thread().name)

    async def hang(self) -> None:
        """Wait until released."""
        await self.release.wait()

    def label(self, x: str) -> str:
        """Runs where it is called."""
        return f"{x} in {threading.current_thread().name}"


class _Toy(sync._Facade, of=AsyncToy):
    def __init__(self) -> None:
        self.target = AsyncToy()

    def _bridge_target(self) -> tuple[Any, _loop_thread.LoopThread]:
        return self.target, _loop_thread.current()


#: Its methods exist only at run time (type checkers see those declared in sync.py).
Toy: Any = _Toy


def test_every_public_method_of_an_unknown_async_class_is_bridged() -> None:
    toy = Toy()
    assert set(public_methods(Toy)) == {"add", "count", "hang", "label"}
    assert toy.add(2, 3, scale=2) == (10, "wachat-loop")  # run on the loop thread
    assert list(toy.count(3)) == [0, 1, 2]
    assert toy.label("x") == f"x in {threading.current_thread().name}"
    for name in ("add", "count", "label"):
        blocking, original = getattr(Toy, name), getattr(AsyncToy, name)
        params = list(inspect.signature(original, eval_str=True).parameters.values())
        assert list(inspect.signature(blocking).parameters.values()) == params
        assert blocking.__qualname__ == f"_Toy.{name}"
        assert blocking.__doc__ == blocking_doc(original.__doc__)
    assert inspect.signature(Toy.count).return_annotation == Iterator[int]
    assert Toy.add.__doc__ == "Add; ``toy.add(1)`` in async code."


def test_an_abandoned_iterator_closes_its_async_generator_on_the_loop() -> None:
    toy = Toy()
    numbers = toy.count(100)
    assert next(numbers) == 0
    numbers.close()
    assert toy.target.closed_on == ["wachat-loop"]


def test_ctrl_c_cancels_an_unknown_method_too() -> None:
    toy = Toy()
    threading.Timer(0.2, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        toy.hang()

    async def pending() -> int:
        return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    loop = _loop_thread.current().loop
    assert asyncio.run_coroutine_threadsafe(pending(), loop).result() == 0
    assert toy.add(1) == (2, "wachat-loop")


def test_a_method_the_facade_defines_is_not_bridged_over() -> None:
    class Custom(sync._Facade, of=AsyncToy, unbridged=("hang",)):
        def label(self, x: str) -> str:
            return "own"

    assert Custom.label(Custom(), "x") == "own"
    assert not hasattr(Custom, "hang")
    assert hasattr(Custom, "add")


def test_the_real_groups_bridge_whatever_the_async_groups_have() -> None:
    client = AsyncWachat("k", base_url="http://127.0.0.1:9/api/v1")
    for attribute in ("instances", "messages", "webhooks"):
        async_cls = type(getattr(client, attribute))
        sync_cls = getattr(Wachat, attribute)
        assert set(public_methods(sync_cls)) == set(public_methods(async_cls)), attribute
    # The client: every public method but aclose (close is its blocking form).
    assert set(public_methods(AsyncWachat)) - set(vars(Wachat)) == {"aclose"}


def test_close_twice_and_after_the_context_manager(thread_server: FakeWachat) -> None:
    with Wachat(KEY, base_url=thread_server.base_url, retry_policy=FAST_RETRY) as wa:
        assert wa.instances.list() == []
    assert wa.closed
    wa.close()
    wa.close()
    assert wa.closed


def test_an_iterator_stepped_by_the_real_client_survives_a_failing_step(
    thread_server: FakeWachat,
) -> None:
    thread_server.inject(Fault.status(400), path="/instance/create", times=1)
    with Wachat(KEY, base_url=thread_server.base_url, retry_policy=FAST_RETRY) as wa:
        results = list(wa.instances.create_many([{"instance_name": f"it{i}"} for i in range(3)]))
    assert sorted(r.ok for r in results) == [False, True, True]
