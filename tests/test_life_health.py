"""A number's health during a broadcast: sends refused, or failed by their receipts, pause the
instance once its health falls below ``Pace(min_health=...)``; the result and the progress say
why, and a re-run resumes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import serving
from wachat_async import (
    AsyncWachat,
    BroadcastProgress,
    BroadcastStatus,
    InvalidRequestError,
    Pace,
    SendSpec,
    TextMessage,
)
from wachat_async.testing import FakeWachat, Fault
from wachat_async.webhooks import WebhookEvent, WebhookReceiver

S = BroadcastStatus
SECRET = "whsec_life_health"


async def connected(wa: AsyncWachat, server: FakeWachat, friendly: str) -> str:
    name = (await wa.instances.create(friendly)).instance.api_instance_name
    assert name is not None
    server.scan(name)
    return name


def specs(name: str, count: int) -> list[SendSpec]:
    return [
        SendSpec(instance=name, recipient=f"6283000000{i:02d}", message=TextMessage("Hi"))
        for i in range(count)
    ]


async def test_refused_sends_pause_the_instance_and_a_rerun_resumes_it(
    wa: AsyncWachat, server: FakeWachat, tmp_path: Path
) -> None:
    name = await connected(wa, server, "health")
    journal = tmp_path / "journal.sqlite"
    server.inject(Fault.status(400, message="recipient cannot receive"), path="/send/text", times=3)
    pace = Pace(interval=0, jitter=0, min_health=0.5, health_sample=4)
    progress: list[BroadcastProgress] = []
    first = [
        r
        async for r in wa.messages.send_many(
            specs(name, 10), campaign="c", pace=pace, journal=journal, on_progress=progress.append
        )
    ]
    assert [r.status for r in first] == [S.FAILED] * 3 + [S.SENT] + [S.PAUSED] * 6
    why = progress[-1].paused[name]
    assert "health 0.25 is below 0.5" in why
    assert "3 of 4 sends failed" in why
    assert isinstance(first[-1].error, InvalidRequestError)
    assert why in str(first[-1].error)
    health = progress[-1].health[name]
    assert (health.attempts, health.failed, health.score) == (4, 3, 0.25)
    # A re-run sends what was failed or paused; its health starts afresh.
    again = [
        r.status
        async for r in wa.messages.send_many(
            specs(name, 10), campaign="c", pace=pace, journal=journal
        )
    ]
    assert again == [S.SENT] * 3 + [S.SKIPPED] + [S.SENT] * 6
    assert len(server.sent_messages(name)) == 10


async def test_failed_receipts_count_against_the_instance(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    server.receipt_delay = None  # each receipt below is sent by the test
    name = await connected(wa, server, "receipts_health")

    async def handler(event: WebhookEvent) -> None:
        pass

    receiver = WebhookReceiver(SECRET, handler, receipts=wa.messages.record_receipt)
    finished = asyncio.Event()

    def on_progress(progress: BroadcastProgress) -> None:
        finished.set()

    async def each_after_the_last_failed() -> AsyncIterator[SendSpec]:
        for number, spec in enumerate(specs(name, 6)):
            if number:
                await finished.wait()
                finished.clear()
                last = server.sent_messages(name)[-1]["id"]
                server.send_receipt(name, last, "failed")
                await wa.messages.wait_for_status(last, "failed", timeout=30)
            yield spec

    async with serving(receiver.app()) as url:
        await wa.webhooks.upsert(url + "/", events=["messages.update"], secret=SECRET)
        pace = Pace(interval=0, jitter=0, min_health=0.5, health_sample=3)
        results = [
            r
            async for r in wa.messages.send_many(
                each_after_the_last_failed(), campaign="r", pace=pace, on_progress=on_progress
            )
        ]
        await server.flush_deliveries()
        await receiver.drain()
    # Every send was accepted; the receipts said the first two failed: health 1/3.
    assert [r.status for r in results] == [S.SENT] * 3 + [S.PAUSED] * 3
    assert "2 of 3 sends failed" in str(results[-1].error)


def test_min_health_is_checked() -> None:
    with pytest.raises(InvalidRequestError, match="min_health must be a number from 0 to 1"):
        Pace(min_health=1.5)
    with pytest.raises(InvalidRequestError):
        Pace(health_sample=0)
