"""Redaction that holds whatever the case and the length of the key: a key a server echoes
lowercased or uppercased (``Set-Cookie``, ``WWW-Authenticate``, a body) is still removed; a
short key (``test``, ``k``, ``dev``) is removed where it stands as the key, and leaves the
letters of ordinary words alone."""

from __future__ import annotations

import base64
import logging
import re
import string
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import FAST_RETRY
from tests.edges import KEYS, Front, json_answer, leaks
from wachat_async import APIConnectionError, AsyncWachat, AuthenticationError
from wachat_async._security import FRAGMENT, SHORT, Redactor
from wachat_async.testing import FakeWachat

SERVER_KEY = "the-server-only-knows-this-key-0123"
SHORT_KEYS = ["test", "k", "dev", "abc1", "K", "demo", "sandbox"]

#: What the library, the API and its proxies say, which a short key must leave readable.
ORDINARY = [
    "401 Invalid or missing API key (GET /instance/list)",
    "403 Your subscription does not allow more instances. Check the dashboard",
    "404 instance not found: every call after create takes the API instance name",
    "Could not connect: ClientConnectorError: Cannot connect to host 127.0.0.1:9 ssl:default",
    "The proxy refused: ClientHttpProxyError: 407, message='Proxy Authentication Required'",
    "Timed out after 30 s (3 attempts over 1.2 s)",
    "Connection lost: ServerDisconnectedError: Server disconnected",
    "Unexpected response from Wachat: the answer is compressed as 'br'",
    "429 Too many requests. The server asked to wait 1.5 s",
    "502 Bad Gateway: the device is not ready yet, test again later",
    '{"success": false, "error": "Invalid token, please check your key settings"}',
    "Kindly reconnect the development device; keys are checked at login",
]


def variants(key: str) -> list[str]:
    return sorted({key, key.lower(), key.upper(), key.swapcase()})


def case_leaks(error: BaseException, key: str) -> list[str]:
    """Where any 8-character piece of ``key``, in any of its letter cases and spellings, shows
    in ``error`` (text, repr, args, fields, chain, pickle)."""
    return [found for variant in variants(key) for found in leaks(error, variant)]


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys=set(KEYS) | {SERVER_KEY}, qr_pool=2) as server:
        yield server


# -- another letter case ----------------------------------------------------------------------


def echo_in_every_case(key: str) -> web.Response:
    lower, upper = key.lower(), key.upper()
    headers = {
        "Set-Cookie": f"session={lower}; Path=/; HttpOnly",
        "WWW-Authenticate": f'Bearer realm="api", error="invalid_token", token="{upper}"',
        "X-Echo": key.swapcase(),
        "X-Echo-Base64": base64.b64encode(lower.encode()).decode(),
        f"X-{''.join(c for c in lower if c.isalnum())}": "1",
    }
    body = {"error": f"unknown key {lower}", "details": {"KEY": upper, "hint": [key.swapcase()]}}
    return json_answer(401, body, headers=headers)


@pytest.mark.parametrize("key", KEYS)
async def test_a_key_echoed_in_another_case_never_leaks(
    fake: FakeWachat, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    caplog.set_level(logging.DEBUG)

    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        return echo_in_every_case(key)

    async with (
        Front(fake, script) as api,
        AsyncWachat(key, base_url=api.base_url, retry_policy=FAST_RETRY) as wa,
    ):
        with pytest.raises(AuthenticationError) as caught:
            await wa.instances.list()
    error = caught.value
    assert "X-Echo" in error.headers
    assert "Set-Cookie" in error.headers
    assert "unknown key ***" in error.message
    assert not case_leaks(error, key)
    for record in caplog.records:
        for variant in variants(key):
            assert variant[:FRAGMENT] not in record.getMessage()


def test_each_case_and_spelling_is_removed() -> None:
    """Any mix of cases in the key's own characters; base64 of it lowercased or uppercased
    (base64 of an arbitrary mix has no relation to the key's)."""
    key = KEYS[0]
    redact = Redactor(key)
    for variant in (key.lower(), key.upper()):
        encoded = base64.b64encode(variant.encode()).decode()
        assert redact(f"<{encoded}>") == "<***>", variant
        assert redact(f"<{encoded.lower()}>") == "<***>", variant
    for variant in variants(key):
        for text in (
            variant,
            variant.replace("/", "\\/"),
            "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in variant),
            variant[5 : 5 + FRAGMENT],  # a piece, in another case
        ):
            assert redact(f"<{text}>") == "<***>", text


# -- short keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", SHORT_KEYS)
def test_a_short_key_leaves_ordinary_words_alone(key: str) -> None:
    redact = Redactor(key)
    for text in ORDINARY:
        if not holds_the_key(text, key):
            assert redact(text) == text


@pytest.mark.parametrize("key", SHORT_KEYS)
def test_a_short_key_is_removed_where_it_stands_as_the_key(key: str) -> None:
    redact = Redactor(key)
    for text, expected in [
        (f"Authorization: Bearer {key}", "Authorization: Bearer ***"),
        (f'{{"apiKey": "{key.upper()}"}}', '{"apiKey": "***"}'),
        (f"https://x.example/a?apiKey={key}&b=1", "https://x.example/a?apiKey=***&b=1"),
        (f"Invalid or missing API key {key.lower()}.", "Invalid or missing API key ***."),
        (key, "***"),
    ]:
        assert redact(text) == expected, text


@pytest.mark.parametrize("key", ["test", "abc1", "demo", "sandbox", "u:pw"])
def test_the_base64_of_a_short_key_is_removed_where_it_stands(key: str) -> None:
    encoded = base64.b64encode(key.encode()).decode()
    redact = Redactor(key)
    assert redact(f"token={encoded}") == "token=***"
    assert redact(f"Proxy-Authorization: Basic {encoded.rstrip('=')}") == (
        "Proxy-Authorization: Basic ***"
    )


def test_the_base64_of_a_very_short_key_is_not_an_ordinary_word() -> None:
    """The base64 of 1 to 3 characters is 2 to 4 letters: ``THE`` is ``Lq``'s."""
    assert base64.b64encode(b"Lq") == b"THE="
    text = "THE KEY IS WRONG; the key is wrong"
    assert Redactor("Lq")(text) == text


async def test_a_wrong_short_key_gets_a_readable_401(
    fake: FakeWachat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for key in SHORT_KEYS:
        async with AsyncWachat(key, base_url=fake.base_url, retry_policy=FAST_RETRY) as wa:
            with pytest.raises(AuthenticationError) as caught:
                await wa.instances.list()
        assert "401 Invalid or missing API key" in str(caught.value)
        assert "***" not in str(caught.value)


async def test_a_short_key_echoed_by_the_server_is_removed(fake: FakeWachat) -> None:
    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        return json_answer(
            401,
            {"error": f"Invalid or missing API key: {key}"},
            headers={"Set-Cookie": f"k={key.lower()}", "WWW-Authenticate": f"Bearer {key}"},
        )

    async with Front(fake, script) as api:
        for key in SHORT_KEYS:
            async with AsyncWachat(key, base_url=api.base_url, retry_policy=FAST_RETRY) as wa:
                with pytest.raises(AuthenticationError) as caught:
                    await wa.instances.list()
            error = caught.value
            assert error.message == "Invalid or missing API key: ***"
            assert error.headers["WWW-Authenticate"] == "Bearer ***"
            assert error.headers["Set-Cookie"].endswith("=***")


# -- the rule, on random keys ---------------------------------------------------------------

KEY_CHARACTERS = string.ascii_letters + string.digits + "-_"
keys = st.text(KEY_CHARACTERS, min_size=1, max_size=48)
words = st.lists(
    st.sampled_from([*" ".join(ORDINARY).split(), "key", "a", "I", "OK", "the", "device"]),
    min_size=1,
    max_size=30,
)


def holds_the_key(text: str, key: str) -> bool:
    """Whether ``text`` holds ``key`` (any case) as the redactor defines holding it: anywhere
    for a long key, standing alone for a short one."""
    if len(key) >= SHORT:
        return key.lower() in text.lower()
    before = r"(?<![^\W_])" if key[0].isalnum() else ""
    after = r"(?![^\W_])" if key[-1].isalnum() else ""
    return re.search(before + re.escape(key) + after, text, re.IGNORECASE) is not None


@settings(max_examples=300, deadline=None)
@given(key=keys, text=st.one_of(st.sampled_from(ORDINARY), words.map(" ".join)))
def test_text_without_the_key_is_left_as_it_is(key: str, text: str) -> None:
    redact = Redactor(key)
    if not holds_the_key(text, key) and not any(
        key.lower()[i : i + FRAGMENT] in text.lower() for i in range(len(key) - FRAGMENT + 1)
    ):
        assert redact(text) == text


@settings(max_examples=300, deadline=None)
@given(
    key=keys,
    parts=words,
    where=st.lists(st.integers(0, 30), min_size=1, max_size=3),
    case=st.sampled_from([str, str.lower, str.upper, str.swapcase]),
    glue=st.sampled_from([" ", ": ", "=", '"', "/", "\n"]),
)
def test_text_with_the_key_loses_it(
    key: str, parts: list[str], where: list[int], case: Any, glue: str
) -> None:
    for at in sorted(where, reverse=True):
        parts.insert(min(at, len(parts)), f"{glue}{case(key)}{glue}")
    text = " ".join(parts)
    redacted = Redactor(key)(text)
    assert not holds_the_key(redacted, key), redacted
    assert redacted.count("***") >= 1


def test_a_short_key_edged_with_punctuation_is_removed_against_letters() -> None:
    assert Redactor("-k")("id=x-k;") == "id=x***;"
    assert Redactor("k-")("k-1 and key") == "***1 and key"


def test_a_long_key_glued_to_other_letters_is_still_removed() -> None:
    key = "abcd1234efgh"
    assert Redactor(key)(f"token=xx{key.upper()}yy") == "token=xx***yy"


async def test_a_network_failure_reads_well_with_a_short_key() -> None:
    """aiohttp's own words (quoted in APIConnectionError) keep their letters."""
    for key in SHORT_KEYS:
        async with AsyncWachat(
            key, base_url="http://127.0.0.1:9/api/v1", retry_policy=FAST_RETRY, max_retries=0
        ) as wa:
            with pytest.raises(APIConnectionError) as caught:
                await wa.instances.list()
        assert "***" not in str(caught.value), key
        assert "Could not connect: ClientConnectorError: Cannot connect to host" in str(
            caught.value
        )
