"""Every page the sandbox serves escapes what it shows and carries the dev phone's strict
content security policy: hostile instance names over HTTP, then in a real browser, where no
script of theirs may run."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import aiohttp
import pytest
from yarl import URL

from tests.conftest import KEY
from tests.test_devphone import HAVE_PLAYWRIGHT, browser  # noqa: F401
from wachat_async.testing import FakeWachat
from wachat_async.testing._web import SECURITY_HEADERS

if HAVE_PLAYWRIGHT:
    from playwright.async_api import Browser

HOSTILE_NAMES = [
    "x</title><script>window.__pwned=1;alert(1)</script>",
    '"><img src=x onerror="window.__pwned=2;alert(2)">',
    "'><svg onload=window.__pwned=3>",
    "<script src=//evil.example/x.js></script>",
    '<meta http-equiv="refresh" content="0;url=javascript:window.__pwned=4">',
    "</title><body onload=window.__pwned=5>",
    "&lt;script&gt;alert(6)&lt;/script&gt;",  # must show as typed, not decoded once
    "<iframe srcdoc='<script>parent.__pwned=7</script>'>",
]


class Markup(HTMLParser):
    """The elements and attributes of a page, and its title's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.title = ""
        self._in_title = False

    @classmethod
    def of(cls, page: str) -> Markup:
        parser = cls()
        parser.feed(page)
        parser.close()
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


@pytest.fixture
async def sandbox() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as server:
        yield server


async def create(http: aiohttp.ClientSession, server: FakeWachat, name: str) -> str:
    """Create an instance through the API as any HTTP client could (no client-side checks)."""
    async with http.post(
        server.base_url + "/instance/create",
        json={"instanceName": name},
        headers={"Authorization": f"Bearer {KEY}"},
    ) as resp:
        assert resp.status == 201
        api_name: str = (await resp.json())["instance"]["apiInstanceName"]
    return api_name


def live_url(server: FakeWachat, api_name: str) -> str:
    query = {"instanceName": api_name, "apiKey": KEY}
    return str(URL(server.base_url + "/instance/qr/live") % query)


def assert_guarded(resp: aiohttp.ClientResponse, *, frameable: bool = False) -> None:
    csp = resp.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "base-uri 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert ("frame-ancestors 'none'" in csp) is not frameable
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_the_live_qr_page_escapes_the_name_and_has_a_strict_policy(
    sandbox: FakeWachat, name: str
) -> None:
    async with aiohttp.ClientSession() as http:
        api_name = await create(http, sandbox, name)
        url = live_url(sandbox, api_name)
        for connected in (False, True):
            if connected:
                sandbox.scan(api_name)
            async with http.get(url) as resp:
                assert resp.status == 200
                assert resp.content_type == "text/html"
                # Made for another site's <iframe> (the API says so): framable, nothing else.
                assert_guarded(resp, frameable=True)
                page = await resp.text()
            assert f"<title>{html.escape(name)}</title>" in page
            assert name not in page
            parsed = Markup.of(page)
            assert parsed.title == name  # the name is text, drawn as it was typed
            assert set(parsed.tags) <= {"html", "head", "meta", "title", "body", "img", "h2"}
            assert parsed.tags.count("img") == (0 if connected else 1)
            assert parsed.tags.count("meta") == 1
            assert not [a for a in parsed.attributes if a.startswith("on")]


async def test_every_answer_carries_the_policy(sandbox: FakeWachat) -> None:
    async with aiohttp.ClientSession() as http:
        api_name = await create(http, sandbox, HOSTILE_NAMES[0])
        urls = [
            f"{sandbox.control_url}/phone/",
            f"{sandbox.control_url}/phone/devphone.js",
            f"{sandbox.control_url}/phone/devphone.css",
            f"{sandbox.control_url}/instances",
            str(URL(sandbox.control_url) / "instances" / api_name),
            f"{sandbox.control_url}/nowhere",
            f"{sandbox.base_url}/instance/list",
            str(
                URL(sandbox.base_url + "/instance/qr/image")
                % {"instanceName": api_name, "apiKey": KEY}
            ),
            f"{sandbox.base_url}/nowhere",
        ]
        for url in urls:
            async with http.get(url, headers={"Authorization": f"Bearer {KEY}"}) as resp:
                assert_guarded(resp)
                for header, policy in SECURITY_HEADERS.items():
                    assert resp.headers[header] == policy, url
        async with http.get(sandbox.control_url + "/phone/") as resp:
            assert resp.headers["Cache-Control"] == "no-store"


async def test_no_hostile_name_runs_a_script_in_a_browser(
    sandbox: FakeWachat,
    browser: Browser,  # noqa: F811
) -> None:
    names: list[str] = []
    async with aiohttp.ClientSession() as http:
        for name in HOSTILE_NAMES:
            names.append(await create(http, sandbox, name))
    sandbox.scan(names[1])
    sandbox.receive_message(names[1], "628111222333", HOSTILE_NAMES[0], push_name=HOSTILE_NAMES[1])
    context = await browser.new_context()
    ran: list[str] = []
    page = await context.new_page()
    page.on("dialog", lambda dialog: ran.append(f"dialog {dialog.message}"))
    page.on("pageerror", lambda exc: ran.append(f"page error {exc}"))
    try:
        for api_name in names[:3]:
            url = live_url(sandbox, api_name)
            await page.goto(url)
            title = await page.title()
            assert title == HOSTILE_NAMES[names.index(api_name)]  # drawn as text
            assert await page.evaluate("typeof window.__pwned") == "undefined"
        await page.goto(sandbox.dev_phone_url)
        for name in HOSTILE_NAMES:
            heading = page.get_by_role("heading", name=name, exact=True)
            await heading.wait_for()
        await page.get_by_text(HOSTILE_NAMES[0], exact=True).first.wait_for()
        assert await page.evaluate("typeof window.__pwned") == "undefined"
        assert await page.locator("script").count() == 1  # the page's own
        assert (
            await page.locator(".card img:not(.qr-img), svg, iframe, meta[http-equiv]").count() == 0
        )
    finally:
        await context.close()
    assert ran == []
