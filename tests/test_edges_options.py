"""Every option is checked when a client is built (or a call is made), with an error that names
the parameter: never a crash deep in aiohttp, a retry loop that spins, or a check switched off
by a NaN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.edges import KEY
from wachat_async import AsyncWachat, InvalidRequestError, RetryPolicy, Wachat, WaitTimeoutError
from wachat_async.testing import FakeWachat

LOOPBACK = "http://127.0.0.1:9/api/v1"
NAN, INF = float("nan"), float("inf")

SECONDS = [NAN, INF, -INF, 0, 0.0, -1, True, False, "30", None, [1]]
CLIENT_OPTIONS: list[tuple[str, Any]] = [
    *[("timeout", v) for v in SECONDS],
    *[("connect_timeout", v) for v in SECONDS],
    *[("settle_delay", v) for v in [NAN, INF, -1, -0.5, True, "3", None]],
    *[("max_retries", v) for v in [-1, True, 1.5, "2", NAN]],
    *[("pool_limit", v) for v in [0, -1, True, 1.5, "8", None]],
    *[("max_response_bytes", v) for v in [0, -1, True, 1.5, INF, "1"]],
    *[("max_image_bytes", v) for v in [0, -1, False, 2.5]],
    *[("retry_policy", v) for v in [RetryPolicy, {"max_retries": 1}, "fast", 3]],
    *[("reconcile", v) for v in [1, "yes", None]],
    *[("trust_env", v) for v in [0, "no"]],
    *[("allow_insecure_http", v) for v in ["no", 1]],
    *[
        ("default_headers", v)
        for v in [
            {"Authorization": "Bearer other"},
            {"authorization": "x"},
            {"AUTHORIZATION": "x"},
            {"X-Tenant": "a\r\nX-Injected: 1"},
            {"X-Tenant\n": "a"},
            {"X Tenant": "a"},
            {"": "a"},
            {"X-Tenant": "a\x00b"},
            {"X-Tenant": "a\x7fb"},
            {"X-Tenant": "\ud800"},
            {"X-Tenant": 1},
            {1: "a"},
            {"Host": "evil.example"},
            {"Content-Length": "0"},
            {"Transfer-Encoding": "chunked"},
            [("X-Tenant", "a")],
            "X-Tenant: a",
        ]
    ],
    *[
        ("proxy", v)
        for v in [
            "not a url",
            "127.0.0.1:3128",
            "socks5://127.0.0.1:1080",
            "http://",
            "http://127.0.0.1:99999",
            "http://pro xy:3128",
            "",
            5,
        ]
    ],
]


@pytest.mark.parametrize(("name", "value"), CLIENT_OPTIONS)
@pytest.mark.parametrize("client", [AsyncWachat, Wachat])
def test_bad_client_option_is_refused_naming_it(
    client: type[AsyncWachat] | type[Wachat], name: str, value: Any
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client(KEY, base_url=LOOPBACK, **{name: value})
    assert name in str(caught.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://user:pass@127.0.0.1/api/v1",
        f"https://{KEY[:10].replace('/', '')}@api.example/api/v1",
        "https://api.example/api/v1?apiKey=secret",
        "https://api.example/api/v1#frag",
        "ftp://api.example/api/v1",
        "api.example/api/v1",
        "https:///api/v1",
        "https://api.example:99999/api/v1",
        "https://[::1/api/v1",
        "https://api example/api/v1",
        "https://api.example/api v1",
        "https://api.example/api/v1\x00",
        "",
        "   ",
        123,
        b"https://api.example/api/v1",
    ],
)
def test_bad_base_url_is_refused_naming_it(base_url: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        AsyncWachat(KEY, base_url=base_url)
    assert "base_url" in str(caught.value)


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="plain http"):
        AsyncWachat(KEY, base_url="http://api.example/api/v1")
    AsyncWachat(KEY, base_url="http://api.example/api/v1", allow_insecure_http=True)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_retries", -1),
        ("max_retries", True),
        ("max_retries", 1.5),
        *[(f, v) for f in ("initial_backoff", "max_backoff") for v in (NAN, INF, 0, -1, True)],
        *[(f, v) for f in ("total_budget", "max_retry_after") for v in (NAN, INF, -1, "9")],
    ],
)
def test_bad_retry_policy_field_is_refused_naming_it(name: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError, match=name):
        RetryPolicy(**{name: value})


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as server:
        yield server


@pytest.mark.parametrize("value", [NAN, INF, 0, -1, True, "5"])
async def test_bad_per_call_options_are_refused_before_sending(
    fake: FakeWachat, value: Any
) -> None:
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        for call in (
            lambda: wa.instances.list(timeout=value),
            lambda: wa.instances.state("t1_a_b", timeout=value),
            lambda: wa.instances.create("shop", timeout=value),
            lambda: wa.messages.send_text("t1_a_b", "628123456789", "hi", timeout=value),
            lambda: wa.request("GET", "/instance/list", timeout=value),
        ):
            with pytest.raises(InvalidRequestError, match="timeout"):
                await call()
        with pytest.raises(InvalidRequestError, match="timeout"):
            wa.with_options(timeout=value)
        with pytest.raises(InvalidRequestError, match="max_retries"):
            await wa.instances.list(max_retries=-1 if value != "5" else "5")  # type: ignore[arg-type]
    assert not fake.requests


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", NAN),
        ("timeout", INF),
        ("timeout", 0),
        ("timeout", -3),
        ("timeout", True),
        ("poll_interval", 0),
        ("poll_interval", NAN),
        ("poll_interval", INF),
        ("poll_interval", -1),
        ("poll_interval", "1"),
    ],
)
async def test_wait_until_connected_refuses_bad_timing(
    fake: FakeWachat, name: str, value: Any
) -> None:
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        with pytest.raises(InvalidRequestError, match=name):
            await wa.instances.wait_until_connected("t1_a_b", **{name: value})
    assert not fake.requests


async def test_poll_interval_has_a_floor(fake: FakeWachat) -> None:
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        created = await wa.instances.create("shop")
        with pytest.raises(WaitTimeoutError) as caught:
            await wa.instances.wait_until_connected(
                created.instance.api_instance_name, timeout=0.5, poll_interval=1e-9
            )
    polls = fake.stats["requests GET /instance/state"]
    assert caught.value.attempts == polls
    assert 1 <= polls <= 7  # 0.5 s at one poll per 0.1 s at most, not thousands
