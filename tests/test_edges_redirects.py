"""Redirects are never followed: every 3xx, on every kind of call, with the client's session or
the caller's own (even one with ``raise_for_status=True``), ends in RedirectError saying where
it pointed (with the key removed), and the target receives nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.edges import KEY, Front, leaks
from wachat_async import AsyncWachat, RedirectError
from wachat_async.testing import FakeWachat

STATUSES = (301, 302, 303, 307, 308)

Operation = Callable[[AsyncWachat], Awaitable[Any]]

OPERATIONS: dict[str, Operation] = {
    "create": lambda wa: wa.instances.create(
        "shop",
        integration="WHATSAPP-BUSINESS",
        meta_token="meta-secret-token-0123456789",
        meta_business_id="1",
        meta_phone_number_id="2",
    ),
    "webhook_upsert": lambda wa: wa.webhooks.upsert(
        "https://hooks.example.com/x", secret="whsec-very-secret-0123456789"
    ),
    "state": lambda wa: wa.instances.state("t1_abc_shop"),
    "delete": lambda wa: wa.instances.delete("t1_abc_shop"),
    "qr_image": lambda wa: wa.instances.qr_image("t1_abc_shop"),
    "send_text": lambda wa: wa.messages.send_text("t1_abc_shop", "628123456789", "hi"),
    "request_post": lambda wa: wa.request("POST", "/send/text", json={"a": 1}),
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}) as server:
        yield server


@pytest.fixture
async def target(fake: FakeWachat) -> AsyncIterator[Front]:
    """Where the redirects point: it must never be reached."""
    async with Front(fake) as front:
        yield front


def redirecting(status: int, location: str) -> Callable[[web.Request, bytes], Awaitable[Any]]:
    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location}, text="moved")

    return script


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_no_redirect_is_followed(
    fake: FakeWachat, target: Front, status: int, operation: str
) -> None:
    location = f"{target.root}/api/v1/elsewhere?apiKey={KEY}"
    async with (
        Front(fake, redirecting(status, location)) as api,
        AsyncWachat(KEY, base_url=api.base_url, max_retries=3) as wa,
    ):
        with pytest.raises(RedirectError) as caught:
            await OPERATIONS[operation](wa)
    error = caught.value
    assert error.status_code == status
    assert error.location is not None
    assert error.location.startswith(f"{target.root}/api/v1/elsewhere?apiKey=")
    assert error.location in str(error)
    assert not leaks(error, KEY)
    assert sum(api.hits.values()) == 1  # never retried
    assert not target.hits  # nothing reached where it pointed
    assert not fake.requests


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("operation", ["create", "webhook_upsert", "state", "delete"])
async def test_callers_session_with_raise_for_status_still_gets_redirect_error(
    fake: FakeWachat, target: Front, status: int, operation: str
) -> None:
    async with (
        Front(fake, redirecting(status, target.root + "/steal")) as api,
        aiohttp.ClientSession(raise_for_status=True) as session,
        AsyncWachat(KEY, base_url=api.base_url, session=session) as wa,
    ):
        with pytest.raises(RedirectError) as caught:
            await OPERATIONS[operation](wa)
        assert not session.closed  # never closed what it did not open
    assert caught.value.location == target.root + "/steal"
    assert not target.hits
    assert sum(api.hits.values()) == 1


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:9/plain-http-downgrade",
        "https://evil.example/collect",
        "/api/v1/instance/create",
        "//evil.example/protocol-relative",
        "",
    ],
)
async def test_any_location_is_reported_not_followed(fake: FakeWachat, location: str) -> None:
    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        headers = {"Location": location} if location else {}
        return web.Response(status=307, headers=headers)

    async with Front(fake, script) as api, AsyncWachat(KEY, base_url=api.base_url) as wa:
        with pytest.raises(RedirectError) as caught:
            await wa.instances.create("shop")
    assert caught.value.location == (location or None)
    assert "redirect" in str(caught.value)
    assert api.hits["POST /instance/create"] == 1
    assert fake.count_instances("shop") == 0


@pytest.mark.parametrize(
    "location",
    [
        f"https://evil.example/?k={KEY}",
        f"https://evil.example/{KEY.replace('/', '%2F').replace('+', '%2B')}",
        f"https://{KEY[:20].replace('/', '').replace('+', '')}.evil.example/",
        f"https://user:{KEY}@evil.example/",
    ],
)
async def test_location_carrying_the_key_is_redacted(fake: FakeWachat, location: str) -> None:
    async with (
        Front(fake, redirecting(302, location)) as api,
        AsyncWachat(KEY, base_url=api.base_url) as wa,
    ):
        with pytest.raises(RedirectError) as caught:
            await wa.instances.list()
    error = caught.value
    assert error.location is not None
    assert "evil.example" in error.location
    assert "***" in error.location
    assert not leaks(error, KEY), leaks(error, KEY)
