"""Retries that never duplicate: every fault against a create, a read, a send and a delete, each
asserting what the user sees and what the server really holds; Retry-After; and a chaos run."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import socket
import time

import pytest

from tests.conftest import FAST_RETRY, KEY, no_other_tasks
from wachat_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncWachat,
    FailureClass,
    OutcomeUnknownError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    WachatError,
)
from wachat_async.testing import FakeWachat, Fault
from wachat_async.testing._server import QR_EXPIRY_TASK

# A create whose response is lost must be found, not resent: the slow fault outlives the
# client's timeout, so the settle delay must outlive the fault.
TIMEOUT = 1.0
SLOW = 1.5
SETTLE = 2.0


def client(server: FakeWachat, **options: object) -> AsyncWachat:
    settings: dict[str, object] = {
        "base_url": server.base_url,
        "retry_policy": FAST_RETRY,
        "timeout": TIMEOUT,
        "settle_delay": SETTLE,
    }
    settings.update(options)
    return AsyncWachat(KEY, **settings)  # type: ignore[arg-type]


# (fault, did the server do the work, outcome of a create)
CREATE_MATRIX = [
    ("429", Fault.status(429, retry_after=0.01), False, "created"),
    ("503", Fault.status(503), False, "created"),
    ("500", Fault.status(500), False, "created"),
    ("502", Fault.status(502), False, "created"),
    ("504", Fault.status(504), False, "created"),
    ("drop_before", Fault.drop_before(), False, "created"),
    ("drop_after", Fault.drop_after(), True, "reconciled"),
    ("slow", Fault.slow(SLOW), True, "reconciled"),
    ("malformed", Fault.malformed(), True, "reconciled"),
    ("truncated", Fault.truncated(), True, "reconciled"),
    ("wrong_content_type", Fault.wrong_content_type(), True, "reconciled"),
]


@pytest.mark.parametrize(
    ("label", "fault", "processed", "outcome"), CREATE_MATRIX, ids=[row[0] for row in CREATE_MATRIX]
)
async def test_create_under_each_fault_never_duplicates(
    server: FakeWachat, label: str, fault: Fault, processed: bool, outcome: str
) -> None:
    server.inject(fault, path="/instance/create")
    async with client(server) as wa:
        created = await wa.instances.create(label)
    assert server.count_instances(label) == 1
    assert created.instance.api_instance_name == server.instance(label).api_name
    assert created.reconciled is (outcome == "reconciled")
    assert created.qrcode is not None
    assert created.qrcode.code == server.instance(label).qr_code
    creates = server.stats["requests POST /instance/create"]
    assert creates == (1 if processed else 2)  # resent only when it proved nothing happened


@pytest.mark.parametrize(
    ("label", "fault", "processed", "outcome"), CREATE_MATRIX, ids=[row[0] for row in CREATE_MATRIX]
)
async def test_create_without_reconciliation_raises_outcome_unknown_when_ambiguous(
    server: FakeWachat, label: str, fault: Fault, processed: bool, outcome: str
) -> None:
    server.inject(fault, path="/instance/create")
    async with client(server, reconcile=False) as wa:
        if label in ("429", "503"):  # throttled: refused by the server, so safely resent
            await wa.instances.create(label)
            assert server.count_instances(label) == 1
            return
        with pytest.raises(OutcomeUnknownError) as info:
            await wa.instances.create(label)
    await server.flush_deliveries()
    await asyncio.sleep(SLOW if label == "slow" else 0)
    assert server.count_instances(label) == (1 if processed else 0)
    assert server.stats["requests POST /instance/create"] == 1  # never resent
    assert info.value.request.path == "/instance/create"
    assert isinstance(info.value.cause, WachatError)


READ_MATRIX = [
    ("429", Fault.status(429, retry_after=0.01), "ok"),
    ("503", Fault.status(503), "ok"),
    ("500", Fault.status(500), "ok"),
    ("drop_before", Fault.drop_before(), "ok"),
    ("drop_after", Fault.drop_after(), "ok"),
    ("slow", Fault.slow(SLOW), "ok"),
    ("truncated", Fault.truncated(), "ok"),
    ("malformed", Fault.malformed(), "invalid"),
    ("wrong_content_type", Fault.wrong_content_type(), "invalid"),
]


@pytest.mark.parametrize(
    ("label", "fault", "outcome"), READ_MATRIX, ids=[r[0] for r in READ_MATRIX]
)
async def test_read_under_each_fault(
    server: FakeWachat, label: str, fault: Fault, outcome: str
) -> None:
    async with client(server) as wa:
        await wa.instances.create("one")
        server.inject(fault, path="/instance/list")
        if outcome == "ok":
            infos = await wa.instances.list()
            assert [i.instance_name for i in infos] == ["one"]
            assert server.stats["requests GET /instance/list"] == 2
        else:  # a 2xx that does not decode is fatal: resending a read would not fix the server
            with pytest.raises(ResponseValidationError):
                await wa.instances.list()
            assert server.stats["requests GET /instance/list"] == 1
    assert server.count_instances("one") == 1


SEND_MATRIX = [
    ("429", Fault.status(429, retry_after=0.01), "sent", 1),
    ("503", Fault.status(503), "sent", 1),
    ("drop_before", Fault.drop_before(), "unknown", 0),
    ("500", Fault.status(500), "unknown", 0),
    ("drop_after", Fault.drop_after(), "unknown", 1),
    ("slow", Fault.slow(SLOW), "unknown", 1),
    ("truncated", Fault.truncated(), "unknown", 1),
    ("malformed", Fault.malformed(), "sent", 1),
]


@pytest.mark.parametrize(
    ("label", "fault", "outcome", "held"), SEND_MATRIX, ids=[r[0] for r in SEND_MATRIX]
)
async def test_send_is_never_resent_when_ambiguous(
    server: FakeWachat, label: str, fault: Fault, outcome: str, held: int
) -> None:
    async with client(server) as wa:
        name = (await wa.instances.create("sender")).instance.api_instance_name
        server.scan(name)
        server.inject(fault, path="/send/text")
        if outcome == "sent":
            result = await wa.messages.send_text(name, "628111222333", "hello")
            assert result.status_code == 200
        else:
            with pytest.raises(OutcomeUnknownError, match="not resent"):
                await wa.messages.send_text(name, "628111222333", "hello")
    await asyncio.sleep(SLOW if label == "slow" else 0)
    assert len(server.sent_messages(name)) == held


async def test_delete_whose_first_attempt_was_ambiguous_succeeds_on_404(server: FakeWachat) -> None:
    async with client(server) as wa:
        name = (await wa.instances.create("gone")).instance.api_instance_name
        server.inject(Fault.drop_after(), path="/instance/delete")
        await wa.instances.delete(name)
    assert server.count_instances("gone") == 0
    assert server.stats["requests DELETE /instance/delete"] == 2


async def test_retry_after_seconds_ms_and_http_date_are_honoured(server: FakeWachat) -> None:
    async with client(server) as wa:
        for fault, floor in (
            (Fault.status(429, retry_after=0.3), 0.3),
            (Fault.status(503, retry_after_ms=250), 0.25),
        ):
            server.inject(fault, path="/instance/list")
            started = time.monotonic()
            await wa.instances.list()
            assert time.monotonic() - started >= floor
        not_before = int(time.time()) + 2  # an HTTP date has whole seconds
        date = email.utils.formatdate(not_before, usegmt=True)
        server.inject(Fault.status(429, retry_after=date), path="/instance/list")
        await wa.instances.list()
        assert time.time() >= not_before - 0.01


async def test_retry_after_beyond_the_cap_fails_at_once(server: FakeWachat) -> None:
    server.inject(Fault.status(429, retry_after=120), path="/instance/create")
    async with client(server) as wa:
        started = time.monotonic()
        with pytest.raises(RateLimitError) as info:
            await wa.instances.create("patient")
    assert time.monotonic() - started < 60  # not the 120 s it asked for
    assert info.value.retry_after == 120
    assert info.value.attempts == 1
    assert server.count_instances("patient") == 0


async def test_exhausted_retries_report_attempts(server: FakeWachat) -> None:
    server.inject(Fault.status(503), path="/instance/list", times=None)
    async with client(server, max_retries=3) as wa:
        with pytest.raises(ServerError) as info:
            await wa.instances.list()
        assert info.value.attempts == 4
        with pytest.raises(ServerError) as info:
            await wa.instances.list(max_retries=0)
        assert info.value.attempts == 1
        with pytest.raises(ServerError) as info:
            await wa.with_options(max_retries=1).instances.list()
        assert info.value.attempts == 2


async def test_connection_refused_is_not_sent_and_retried() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncWachat(
        KEY, base_url=f"http://127.0.0.1:{port}/api/v1", retry_policy=FAST_RETRY
    ) as wa:
        with pytest.raises(APIConnectionError) as info:
            await wa.instances.create("nowhere")
    assert info.value.failure is FailureClass.NOT_SENT
    assert info.value.attempts == 3
    assert "Could not connect" in str(info.value)


async def test_per_call_timeout_and_with_options(server: FakeWachat) -> None:
    server.inject(Fault.slow(0.5), path="/instance/list", times=None)
    async with client(server, timeout=5.0, max_retries=0) as wa:
        with pytest.raises(APITimeoutError):
            await wa.instances.list(timeout=0.1)
        with pytest.raises(APITimeoutError):
            await wa.with_options(timeout=0.1).instances.list()
        assert len(await wa.instances.list()) == 0  # the client's own 5 s default still applies


async def test_cancellation_is_not_retried(server: FakeWachat) -> None:
    server.inject(Fault.slow(0.5), path="/instance/list")
    async with client(server) as wa:
        task = asyncio.create_task(wa.instances.list())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.6)
    assert server.stats["requests GET /instance/list"] == 1


async def test_each_retry_is_logged_with_its_class(
    server: FakeWachat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wachat_async")
    server.inject(Fault.status(503), path="/instance/list")
    async with client(server) as wa:
        await wa.instances.list()
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(retries) == 1
    assert "instances.list" in retries[0]
    assert "attempt 1" in retries[0]
    assert "throttled" in retries[0]
    assert "waiting" in retries[0]


async def test_reconciliation_that_finds_two_candidates_refuses_to_guess(
    server: FakeWachat,
) -> None:
    async with client(server) as wa:
        server.inject(Fault.drop_after(), path="/instance/create", times=2)
        await wa.instances.create("twin", max_retries=0)  # reconciled: one candidate
        with pytest.raises(OutcomeUnknownError, match="2 instances with that name") as info:
            await wa.instances.create("twin", max_retries=0)
    assert len(info.value.candidates) == 2


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_no_leaked_descriptors_or_tasks_over_a_thousand_clients(server: FakeWachat) -> None:
    async def cycle() -> None:
        async with AsyncWachat(KEY, base_url=server.base_url) as wa:
            await wa.instances.list()

    for _ in range(20):  # warm-up: lazy imports, the server's own sockets
        await cycle()
    before = _open_fds()
    for _ in range(1000):
        await cycle()
    await asyncio.sleep(0.05)
    assert _open_fds() - before <= 2
    # Only the fake server's own QR-rotation task may still be running.
    leftover = [t for t in await no_other_tasks() if t.get_name() != QR_EXPIRY_TASK]
    assert leftover == []


async def test_chaos_every_call_ends_typed_and_nothing_is_duplicated(server: FakeWachat) -> None:
    """500 creates at concurrency 20 with ~20% of all requests faulted (fixed seed)."""
    faults = [
        Fault.status(429, retry_after=0.01),
        Fault.status(503),
        Fault.status(500),
        Fault.status(502),
        Fault.drop_before(),
        Fault.drop_after(),
        Fault.slow(1.5),
        Fault.malformed(),
        Fault.truncated(),
        Fault.wrong_content_type(),
    ]
    server.chaos(0.2, faults, seed=20261125)
    names = [f"chaos_{i:03d}" for i in range(500)]
    semaphore = asyncio.Semaphore(20)
    outcomes: dict[str, object] = {}

    async with client(server, timeout=1.0, settle_delay=2.0, max_retries=3) as wa:

        async def one(name: str) -> None:
            async with semaphore:
                try:
                    outcomes[name] = await wa.instances.create(name)
                except WachatError as exc:
                    outcomes[name] = exc

        await asyncio.gather(*(one(n) for n in names))
    await asyncio.sleep(1.6)  # let slow faults finish server-side
    server.clear_faults()

    kinds: dict[str, int] = {}
    for name in names:
        outcome = outcomes[name]
        held = server.count_instances(name)
        kinds[type(outcome).__name__] = kinds.get(type(outcome).__name__, 0) + 1
        if isinstance(outcome, OutcomeUnknownError):
            assert held <= 1, name
        elif isinstance(outcome, WachatError):
            assert held == 0, (name, outcome)
        else:
            assert held == 1, name
            assert server.instance(name).api_name == outcome.instance.api_instance_name  # type: ignore[attr-defined]
    assert sum(server.count_instances(n) for n in names) == server.stats["created"]
    assert sum(server.stats[k] for k in server.stats if k.startswith("faults.")) >= 100
    assert kinds.get("CreatedInstance", 0) >= 450, kinds
    random.seed()
