"""Text that cannot be encoded (a lone surrogate, as bad JSON or a broken decoder hands over) is
refused before anything is sent, naming the parameter; in a bulk run it fails its own spec
only, and leaves nothing in flight in the journal."""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.edges import KEY
from wachat_async import (
    AsyncWachat,
    CreateSpec,
    InvalidRequestError,
    ListRow,
    ListSection,
    ReplyButton,
)
from wachat_async.testing import FakeWachat

BAD = "caf\ud800e"  # a lone surrogate: no UTF-8 for it
NAME = "t1_abc_shop"
NUMBER = "628123456789"

Operation = Callable[[AsyncWachat], Awaitable[Any]]


def section(title: str = "Menu", row_title: str = "Tea", **row: Any) -> ListSection:
    return ListSection(title=title, rows=[ListRow(title=row_title, **row)])


LIST: dict[str, Any] = {"title": "T", "text": "x", "button_text": "Open", "sections": [section()]}


def list_with(**changes: Any) -> Operation:
    """A list send whose one section is ``section(**changes)``."""
    return lambda wa: wa.messages.send_list(
        NAME, NUMBER, **{**LIST, "sections": [section(**changes)]}
    )


CASES: dict[str, tuple[str, Operation]] = {
    "create name": ("instance_name", lambda wa: wa.instances.create(f"shop{BAD}")),
    "create number": ("number", lambda wa: wa.instances.create("shop", number=f"62{BAD}")),
    "create meta_token": (
        "meta_token",
        lambda wa: wa.instances.create(
            "shop",
            integration="WHATSAPP-BUSINESS",
            meta_token=f"tok{BAD}",
            meta_business_id="1",
            meta_phone_number_id="2",
        ),
    ),
    "create meta_business_id": (
        "meta_business_id",
        lambda wa: wa.instances.create(
            "shop",
            integration="WHATSAPP-BUSINESS",
            meta_token="tok",
            meta_business_id=BAD,
            meta_phone_number_id="2",
        ),
    ),
    "create_qr_image name": ("instance_name", lambda wa: wa.instances.create_qr_image(BAD)),
    "state name": ("name", lambda wa: wa.instances.state(BAD)),
    "wait name": ("name", lambda wa: wa.instances.wait_until_connected(BAD, timeout=1)),
    "text name": ("name", lambda wa: wa.messages.send_text(BAD, NUMBER, "hi")),
    "text number": ("number", lambda wa: wa.messages.send_text(NAME, f"62{BAD}1234567", "hi")),
    "text message": ("message", lambda wa: wa.messages.send_text(NAME, NUMBER, BAD)),
    "media caption": (
        "caption",
        lambda wa: wa.messages.send_media(
            NAME, NUMBER, "https://x.example/a.png", media_type="image", caption=BAD
        ),
    ),
    "media file_name": (
        "file_name",
        lambda wa: wa.messages.send_media(
            NAME, NUMBER, "https://x.example/a.pdf", media_type="document", file_name=BAD
        ),
    ),
    "media url": (
        "media_url",
        lambda wa: wa.messages.send_media(
            NAME, NUMBER, f"https://x.example/{BAD}.png", media_type="image"
        ),
    ),
    "location place_name": (
        "place_name",
        lambda wa: wa.messages.send_location(
            NAME, NUMBER, latitude=1.0, longitude=2.0, place_name=BAD
        ),
    ),
    "location address": (
        "address",
        lambda wa: wa.messages.send_location(
            NAME, NUMBER, latitude=1.0, longitude=2.0, address=BAD
        ),
    ),
    "list title": (
        "title",
        lambda wa: wa.messages.send_list(NAME, NUMBER, **{**LIST, "title": BAD}),
    ),
    "list button_text": (
        "button_text",
        lambda wa: wa.messages.send_list(NAME, NUMBER, **{**LIST, "button_text": BAD}),
    ),
    "list footer_text": (
        "footer_text",
        lambda wa: wa.messages.send_list(NAME, NUMBER, **LIST, footer_text=BAD),
    ),
    "list section title": ("sections[0].title", list_with(title=BAD)),
    "list row title": ("sections[0].rows[0].title", list_with(row_title=BAD)),
    "list row description": ("sections[0].rows[0].description", list_with(description=BAD)),
    "list row id": ("sections[0].rows[0].row_id", list_with(row_id=BAD)),
    "buttons text": (
        "text",
        lambda wa: wa.messages.send_buttons(NAME, NUMBER, text=BAD, buttons=["Yes"]),
    ),
    "buttons plain button": (
        "buttons[1].text",
        lambda wa: wa.messages.send_buttons(NAME, NUMBER, text="?", buttons=["Yes", BAD]),
    ),
    "buttons button id": (
        "buttons[0].id",
        lambda wa: wa.messages.send_buttons(
            NAME, NUMBER, text="?", buttons=[ReplyButton(id=BAD, text="Yes")]
        ),
    ),
    "buttons title": (
        "title",
        lambda wa: wa.messages.send_buttons(NAME, NUMBER, text="?", buttons=["Yes"], title=BAD),
    ),
    "webhook url": ("url", lambda wa: wa.webhooks.upsert(f"https://x.example/{BAD}")),
    "webhook name": ("name", lambda wa: wa.webhooks.upsert("https://x.example/h", name=BAD)),
    "webhook secret": (
        "secret",
        lambda wa: wa.webhooks.upsert("https://x.example/h", secret=f"whsec{BAD}"),
    ),
    "webhook instance": (
        "instance_name",
        lambda wa: wa.webhooks.upsert("https://x.example/h", instance_name=BAD),
    ),
    "webhook list instance": ("instance_name", lambda wa: wa.webhooks.list(BAD)),
    "request json value": (
        "json['message']",
        lambda wa: wa.request("POST", "/send/text", json={"number": NUMBER, "message": BAD}),
    ),
    "request json nested": (
        "json['a'][1]['b']",
        lambda wa: wa.request("POST", "/send/text", json={"a": [1, {"b": BAD}]}),
    ),
    "request json key": (
        "json[",
        lambda wa: wa.request("POST", "/send/text", json={BAD: 1}),
    ),
    "request json list": ("json[2]", lambda wa: wa.request("POST", "/x", json=[1, "a", BAD])),
    "request json string": ("json", lambda wa: wa.request("POST", "/x", json=BAD)),
    "request params value": (
        "params['instanceName']",
        lambda wa: wa.request("GET", "/instance/state", params={"instanceName": BAD}),
    ),
    "request params key": (
        "params key",
        lambda wa: wa.request("GET", "/instance/state", params={BAD: "x"}),
    ),
    "request path": ("path", lambda wa: wa.request("GET", f"/instance/{BAD}")),
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as server:
        yield server


@pytest.mark.parametrize("case", sorted(CASES))
async def test_unencodable_text_is_refused_before_sending(fake: FakeWachat, case: str) -> None:
    parameter, operation = CASES[case]
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        with pytest.raises(InvalidRequestError) as caught:
            await operation(wa)
    message = str(caught.value)
    assert message.startswith(parameter), message
    assert "cannot be sent" in message
    assert not fake.requests


async def test_json_that_is_not_json_names_the_value(fake: FakeWachat) -> None:
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        with pytest.raises(InvalidRequestError) as caught:
            await wa.request("POST", "/x", json={"a": [{1, 2}]})
        assert "json['a'][0]" in str(caught.value)
        with pytest.raises(InvalidRequestError) as caught:
            await wa.request("POST", "/x", json={"a": float("nan")})
        assert "json['a']" in str(caught.value)
    assert not fake.requests


async def test_sendable_unicode_still_goes_through(fake: FakeWachat) -> None:
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        created = await wa.instances.create("café_東京_🍵")
        answer = await wa.request(
            "GET", "/instance/state", params={"instanceName": created.instance.api_instance_name}
        )
    assert answer["success"] is True
    assert fake.count_instances("café_東京_🍵") == 1


async def test_one_unencodable_spec_fails_alone_and_leaves_no_row_in_flight(
    fake: FakeWachat, tmp_path: pathlib.Path
) -> None:
    journal = tmp_path / "journal.db"
    specs: list[Any] = [
        CreateSpec("shop_a"),
        CreateSpec(f"shop_{BAD}"),
        {"instance_name": "shop_c", "number": f"62{BAD}"},
        CreateSpec("shop_d", meta_token=BAD),
        CreateSpec("shop_e"),
    ]
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        results = sorted(
            [r async for r in wa.instances.create_many(specs, journal=journal, concurrency=2)],
            key=lambda r: r.index,
        )
    assert [r.ok for r in results] == [True, False, False, False, True]
    for result in results[1:4]:
        assert isinstance(result.error, InvalidRequestError)
        assert "cannot be sent" in str(result.error)
    assert fake.stats["requests POST /instance/create"] == 2
    with contextlib.closing(sqlite3.connect(journal)) as db:
        states = dict(db.execute("SELECT instance_name, state FROM provision").fetchall())
    assert "in_flight" not in states.values()
    assert states == {"shop_a": "done", "shop_e": "done"}
