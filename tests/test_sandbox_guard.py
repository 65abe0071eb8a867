"""Other web pages cannot drive a sandbox: forged Host headers (DNS rebinding) get 421, and
state-changing requests from another site's page get 403, the event stream included; the
client, the CLI (no Origin) and the dev phone (same origin) keep working. Over real HTTP, and
in a real browser on another loopback port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import KEY, serving
from tests.test_devphone import CHROMIUM, CHROMIUM_ARGS, HAVE_PLAYWRIGHT, browser  # noqa: F401
from wachat_async import AsyncWachat
from wachat_async.testing import FakeWachat

if HAVE_PLAYWRIGHT:
    from playwright.async_api import Browser, async_playwright

CUSTOMER = "628111222333"


@pytest.fixture
async def sandbox() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=4) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def root(server: FakeWachat) -> str:
    return f"http://127.0.0.1:{server.port}"


async def two_instances(server: FakeWachat) -> tuple[str, str]:
    """A waiting instance and a connected one: (waiting, connected) API names."""
    async with AsyncWachat(KEY, base_url=server.base_url, settle_delay=0.05) as wa:
        waiting = (await wa.instances.create("waiting")).instance.api_instance_name
        connected = (await wa.instances.create("connected")).instance.api_instance_name
    server.scan(connected)
    return waiting, connected


def state_of(server: FakeWachat) -> dict[str, Any]:
    """What a refused request must not have changed."""
    return {
        "instances": {
            name: (inst.state, inst.qr_count, len(inst.received))
            for name, inst in server.instances.items()
        },
        "limits": server._sandbox.pacing.as_json(),
    }


def writes(server: FakeWachat, waiting: str, connected: str) -> list[tuple[str, str, Any]]:
    """Every kind of state-changing request: (method, URL, JSON body or None)."""
    control = server.control_url
    return [
        ("POST", f"{control}/instances/{waiting}/rotate-qr", None),
        ("POST", f"{control}/instances/{waiting}/scan", None),
        ("POST", f"{control}/instances/{connected}/disconnect", None),
        ("POST", f"{control}/instances/{waiting}/messages", {"from": CUSTOMER, "text": "hi"}),
        ("POST", f"{control}/limits", {"per_minute": 1}),
        ("POST", f"{server.base_url}/instance/create", {"instanceName": "third"}),
        ("DELETE", f"{server.base_url}/instance/delete?instanceName={connected}", None),
    ]


# -- DNS rebinding: the Host header ------------------------------------------------------------


FOREIGN_HOSTS = [
    "evil.example:{port}",
    "evil.example",
    "127.0.0.1.nip.io:{port}",
    "localhost.evil.example:{port}",
    "127.0.0.1",  # the right address, the wrong port (80)
    "127.0.0.1:{other}",
    "localhost:{other}",
    "[::1]:{other}",
    "127.0.0.2:{port}",  # loopback, but not this server's address
    "[::1",
    "127.0.0.1:{port}:1",
    "127.0.0.1:x",
    "evil.example:{port}@127.0.0.1",
]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
async def test_a_foreign_host_is_refused_everywhere(
    sandbox: FakeWachat, http: aiohttp.ClientSession, host: str
) -> None:
    waiting, connected = await two_instances(sandbox)
    before = state_of(sandbox)
    forged = host.format(port=sandbox.port, other=sandbox.port + 1)
    auth = {"Authorization": f"Bearer {KEY}"}
    reads = [
        f"{sandbox.base_url}/instance/list",
        f"{sandbox.control_url}/instances",
        f"{sandbox.control_url}/deliveries",
        f"{sandbox.control_url}/events",
        f"{sandbox.control_url}/phone/",
        f"{sandbox.base_url}/instance/qr/live?instanceName={waiting}&apiKey={KEY}",
        root(sandbox) + "/",
    ]
    requests = [("GET", url, None) for url in reads] + writes(sandbox, waiting, connected)
    for method, url, body in requests:
        async with http.request(
            method, url, json=body, headers=auth | {"Host": forged}, allow_redirects=False
        ) as resp:
            assert resp.status == 421, (method, url)
            error = (await resp.json())["error"]
            assert "does not answer for Host" in error
            assert repr(forged) in error
    assert state_of(sandbox) == before
    assert sandbox.stats["refused.host"] == len(requests)
    assert sandbox._changes.watchers == 0


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "LocalHost.:{port}", "[::1]:{port}"]
)
async def test_the_sandbox_answers_for_its_own_addresses(
    sandbox: FakeWachat, http: aiohttp.ClientSession, host: str
) -> None:
    waiting, _ = await two_instances(sandbox)
    own = host.format(port=sandbox.port)
    async with http.post(
        f"{sandbox.control_url}/instances/{waiting}/scan", headers={"Host": own}
    ) as resp:
        assert resp.status == 200
    assert sandbox.instance(waiting).state == "open"


def test_an_allowed_host_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        FakeWachat(api_keys={KEY}, allowed_hosts=["sandbox:port"])


async def test_bound_to_every_address_any_ip_is_its_own_but_no_other_name() -> None:
    async with (
        FakeWachat(
            api_keys={KEY}, host="0.0.0.0", allowed_hosts=["sandbox", "Mapped.Example:9000"]
        ) as server,
        aiohttp.ClientSession() as http,
    ):
        url = f"{root(server)}/_sandbox/instances"
        auth = {"Authorization": f"Bearer {KEY}"}
        for host, status in [
            (f"192.0.2.7:{server.port}", 200),
            (f"[2001:db8::1]:{server.port}", 200),
            (f"sandbox:{server.port}", 200),
            (f"SANDBOX:{server.port}", 200),
            (f"evil.example:{server.port}", 421),
            (f"192.0.2.7:{server.port + 1}", 421),
            (f"sandbox.evil.example:{server.port}", 421),
            ("mapped.example:9000", 200),  # a port mapping's address, as allowed
            (f"mapped.example:{server.port}", 421),  # that name on another port: not allowed
            ("sandbox:9000", 421),
        ]:
            async with http.get(url, headers=auth | {"Host": host}) as resp:
                assert resp.status == status, host


# -- CSRF: requests from another site's page ---------------------------------------------------


CROSS_SITE = [
    {"Origin": "http://evil.example"},
    {"Origin": "http://127.0.0.1:{other}"},  # another loopback port: another origin
    {"Origin": "http://localhost:{other}"},
    {"Origin": "https://127.0.0.1:{port}"},  # the sandbox speaks http only
    {"Origin": "null"},  # a sandboxed frame, a file:// page, a redirect
    {"Origin": "http://127.0.0.1:{port}.evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # another port of the same host is the same site
    {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=lambda h: ",".join(h.values()))
async def test_another_site_cannot_change_anything(
    sandbox: FakeWachat, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    waiting, connected = await two_instances(sandbox)
    before = state_of(sandbox)
    forged = {k: v.format(port=sandbox.port, other=sandbox.port + 1) for k, v in headers.items()}
    auth = {"Authorization": f"Bearer {KEY}"}
    requests = writes(sandbox, waiting, connected)
    for method, url, body in requests:
        async with http.request(method, url, json=body, headers=auth | forged) as resp:
            assert resp.status == 403, (method, url)
            assert "may not drive this sandbox" in (await resp.json())["error"]
    assert state_of(sandbox) == before
    assert len(sandbox.instances) == 2
    assert sandbox.stats["refused.cross_site"] == len(requests)


@pytest.mark.parametrize("headers", CROSS_SITE[:2] + CROSS_SITE[6:7], ids=str)
async def test_another_site_cannot_hold_an_event_stream(
    sandbox: FakeWachat, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    forged = {k: v.format(port=sandbox.port, other=sandbox.port + 1) for k, v in headers.items()}
    async with http.get(f"{sandbox.control_url}/events", headers=forged) as resp:
        assert resp.status == 403
    assert sandbox._changes.watchers == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},  # the client, the CLI: programs send no Origin
        {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},  # the dev phone
        {"Origin": "http://localhost:{port}"},
        {"Sec-Fetch-Site": "none"},  # typed by a person
    ],
    ids=str,
)
async def test_the_sandbox_own_pages_and_programs_still_act(
    sandbox: FakeWachat, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    waiting, connected = await two_instances(sandbox)
    own = {k: v.format(port=sandbox.port) for k, v in headers.items()}
    for method, url, body in writes(sandbox, waiting, connected):
        async with http.request(
            method, url, json=body, headers={"Authorization": f"Bearer {KEY}"} | own
        ) as resp:
            assert resp.status in (200, 201), (method, url, await resp.text())
    assert sandbox.instance(waiting).state == "open"
    assert sandbox._sandbox.pacing.as_json()["per_minute"] == 1
    assert connected not in sandbox.instances
    assert sandbox.stats["refused.cross_site"] == 0


# -- a real browser, on a page of another loopback port ------------------------------------------


def attacker_page(sandbox: FakeWachat, waiting: str, connected: str) -> str:
    """What a hostile page does: blind (no-cors) fetches, then a form POST."""
    control = sandbox.control_url
    return f"""<!doctype html><html><body>
<form id="f" method="POST" action="{control}/instances/{connected}/disconnect"></form>
<script>
(async () => {{
  const blind = {{method: "POST", mode: "no-cors"}};
  await fetch("{control}/instances/{waiting}/scan", blind).catch(() => null);
  await fetch("{control}/instances/{waiting}/rotate-qr", blind).catch(() => null);
  await fetch("{control}/instances/{waiting}/messages", {{...blind,
    headers: {{"Content-Type": "text/plain"}},
    body: JSON.stringify({{from: "{CUSTOMER}", text: "forged"}})}}).catch(() => null);
  await fetch("{control}/limits", {{...blind, body: '{{"per_minute": 1}}'}}).catch(() => null);
  document.title = "fetched";
  document.getElementById("f").submit();
}})();
</script></body></html>"""


async def test_a_page_on_another_loopback_port_cannot_drive_the_sandbox(
    sandbox: FakeWachat,
    browser: Browser,  # noqa: F811
) -> None:
    waiting, connected = await two_instances(sandbox)
    before = state_of(sandbox)
    page_html = attacker_page(sandbox, waiting, connected)

    async def hostile(request: web.Request) -> web.Response:
        return web.Response(text=page_html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", hostile)
    async with serving(app) as elsewhere:
        context = await browser.new_context()
        page = await context.new_page()
        try:
            async with page.expect_navigation(url=f"**/instances/{connected}/disconnect") as nav:
                await page.goto(elsewhere + "/")
            answer = await nav.value
            assert answer is not None
            assert answer.status == 403
            assert "may not drive this sandbox" in await page.content()
        finally:
            await context.close()
    # Each request reached the sandbox (so the test can fail) and was refused.
    assert sandbox.stats["refused.cross_site"] == 5
    assert state_of(sandbox) == before


async def test_a_rebound_name_in_a_browser_reads_nothing(sandbox: FakeWachat) -> None:
    """DNS rebinding as a browser sees it: a name of the attacker's that resolves to 127.0.0.1
    (here by the browser's own resolver rule) reaches the sandbox but is answered 421."""
    if CHROMIUM is None or not HAVE_PLAYWRIGHT:
        pytest.skip("needs chromium and Playwright (see tests/test_devphone.py)")
    waiting, _ = await two_instances(sandbox)
    sandbox.receive_message(waiting, CUSTOMER, "secret chat")
    rule = "--host-resolver-rules=MAP rebound.test 127.0.0.1"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rule], headless=True
        )
        try:
            page = await launched.new_page()
            base = f"http://rebound.test:{sandbox.port}"
            for path in ("/_sandbox/phone/", "/_sandbox/instances", "/_sandbox/events"):
                answer = await page.goto(base + path)
                assert answer is not None
                assert answer.status == 421, path
                assert "secret chat" not in await page.content()
        finally:
            await launched.close()
    assert sandbox.stats["refused.host"] >= 3  # and the favicons the browser asked for
