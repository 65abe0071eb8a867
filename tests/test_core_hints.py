"""Hints carry a stable code next to their text; a 401 from the sandbox says which key it
takes. And ``create`` is an ordinary coroutine function, whose bad arguments raise when
awaited, like every other method's."""

from __future__ import annotations

import inspect

import pytest
from aiohttp import web

from tests.conftest import FAST_RETRY, KEY, serving
from wachat_async import (
    AsyncWachat,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
)
from wachat_async.testing import FakeWachat


async def test_a_wrong_key_against_the_sandbox_hints_at_its_key(server: FakeWachat) -> None:
    async with AsyncWachat("not-the-key", base_url=server.base_url, retry_policy=FAST_RETRY) as wa:
        with pytest.raises(AuthenticationError) as caught:
            await wa.instances.list()
    assert caught.value.hint_code == "sandbox_key"
    assert caught.value.hint is not None
    assert "sandbox" in caught.value.hint
    assert "not-the-key" not in str(caught.value)


async def test_a_401_elsewhere_has_no_sandbox_hint() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"success": False, "error": "Invalid API key"}, status=401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    async with serving(app) as root:
        wa = AsyncWachat(KEY, base_url=root + "/api/v1", retry_policy=FAST_RETRY)
        async with wa:
            with pytest.raises(AuthenticationError) as caught:
                await wa.instances.list()
    assert caught.value.hint_code is None
    assert caught.value.hint is None


async def test_hint_codes_name_the_hints(server: FakeWachat, wa: AsyncWachat) -> None:
    created = await wa.instances.create("shop")
    name = created.instance.api_instance_name
    server.scan(name)
    with pytest.raises(ConflictError) as connected:
        await wa.instances.delete(name)
    assert connected.value.hint_code == "logout_first"
    with pytest.raises(NotFoundError) as friendly:
        await wa.instances.state("shop_without_its_prefix")
    assert friendly.value.hint_code == "api_instance_name"


async def test_create_is_a_coroutine_function_checked_when_awaited(wa: AsyncWachat) -> None:
    assert inspect.iscoroutinefunction(wa.instances.create)
    assert inspect.iscoroutinefunction(wa.instances.create_qr_image)
    assert "instance_name" in inspect.signature(wa.instances.create).parameters
    pending = wa.instances.create("")  # nothing raised yet: it is a coroutine
    with pytest.raises(InvalidRequestError):
        await pending
