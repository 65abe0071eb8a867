"""A create whose lost first attempt lands late, after reconciliation looked twice and the
create was resent: the duplicate it leaves is deleted (logged, and listed in the result), unless
someone has connected it, which is never deleted."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from tests.conftest import FAST_RETRY, KEY
from tests.edges import Front
from wachat_async import AsyncWachat
from wachat_async.testing import FakeWachat, Fault


def shops(fake: FakeWachat) -> list[str]:
    """API names of the fake's instances named ``shop``, oldest first."""
    return [name for name, inst in fake.instances.items() if inst.display_name == "shop"]


async def test_a_late_landing_duplicate_is_deleted(
    server: FakeWachat, wa: AsyncWachat, caplog: pytest.LogCaptureFixture
) -> None:
    server.inject(Fault.land_late(), path="/instance/create", times=2)
    with caplog.at_level(logging.WARNING, logger="wachat_async"):
        created = await wa.instances.create("shop")
    kept = created.instance.api_instance_name
    assert not created.reconciled  # the resend's own answer
    assert server.stats["created"] == 2
    (late,) = created.duplicates_deleted
    assert late != kept
    assert shops(server) == [kept]
    assert server.stats["deleted"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(late in text and "deleted" in text for text in warnings)
    assert not any(KEY in text for text in warnings)


async def test_a_connected_duplicate_is_never_deleted(
    server: FakeWachat, caplog: pytest.LogCaptureFixture
) -> None:
    lists = 0

    async def scan_the_late_one_before_the_last_look(
        request: web.Request, body: bytes
    ) -> web.Response | None:
        nonlocal lists
        if request.path.endswith("/instance/list"):
            lists += 1
            if lists == 3:  # reconciliation looked twice; this is the look after the resend
                server.scan(shops(server)[0])
        return None

    server.inject(Fault.land_late(), path="/instance/create", times=2)
    async with (
        Front(server, scan_the_late_one_before_the_last_look) as api,
        AsyncWachat(KEY, base_url=api.base_url, retry_policy=FAST_RETRY, settle_delay=0.1) as wa,
    ):
        with caplog.at_level(logging.WARNING, logger="wachat_async"):
            created = await wa.instances.create("shop")
    assert lists == 3
    assert created.duplicates_deleted == ()
    assert len(shops(server)) == 2  # both kept: the connected one is someone's
    assert server.stats["deleted"] == 0
    assert any("connected" in r.getMessage() for r in caplog.records)


async def test_a_create_that_was_not_resent_looks_no_further(
    server: FakeWachat, wa: AsyncWachat
) -> None:
    server.inject(Fault.drop_after(), path="/instance/create")
    created = await wa.instances.create("shop")  # found by reconciliation, not resent
    assert created.reconciled
    assert created.duplicates_deleted == ()
    lists = [r for r in server.requests if r.path == "/instance/list"]
    assert len(lists) == 1  # found at the first look; no sweep after it
