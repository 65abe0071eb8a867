"""A throttled broadcast does not look frozen: the engine says what each instance waits for and
until when (``progress.waiting``, with a call to ``on_progress`` as the wait begins), and the
command shows it and folds it into its ETA."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import KEY
from tests.test_cli_helpers import main, write_csv
from wachat_async import (
    AsyncWachat,
    BroadcastProgress,
    InstanceWait,
    Pace,
    SendSpec,
    TextMessage,
    Wachat,
    WaitReason,
)
from wachat_async.cli.broadcast import Broadcasting, Plan, wait_text
from wachat_async.cli.output import Output
from wachat_async.cli.recipients import Recipients, Template
from wachat_async.testing import FakeWachat, Fault


async def test_on_progress_is_told_when_an_instance_is_held_by_a_429_and_until_when(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    api = (await wa.instances.create("store")).instance.api_instance_name
    server.scan(api)
    server.inject(Fault.status(429, retry_after_ms=300), path="/send/text", times=1)
    seen: list[tuple[float, dict[str, InstanceWait], int]] = []

    def record(progress: BroadcastProgress) -> None:
        seen.append((time.time(), dict(progress.waiting), progress.finished))

    specs = [
        SendSpec(instance=api, recipient=f"6281000000{n:02d}", message=TextMessage("Hi"))
        for n in range(3)
    ]
    results = [
        r
        async for r in wa.messages.send_many(
            specs, campaign="c", pace=Pace.off(per_instance=1), on_progress=record
        )
    ]
    assert len(results) == 3
    held = [(at, w[api], done) for at, w, done in seen if api in w]
    assert held, seen
    at, wait, done = held[0]
    assert wait.reason is WaitReason.THROTTLED
    assert 0 < wait.until - at <= 0.3  # until the window the server asked for ends
    assert done == 0  # told as the wait began, before any result
    assert seen[-1][1] == {}  # nothing waits once the run is over


def test_the_status_line_and_the_eta_count_the_wait(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "n.csv", ["number"], [[f"6281{n:08d}"] for n in range(4)])
    recipients = Recipients.open(
        sheet, Template.given("Hi", None, None), campaign="n", instance="t1_x"
    )
    pace = Pace(interval=1.0, jitter=0.0)
    plan = asyncio.run(Plan.read(recipients, frozenset(), pace))
    run = Broadcasting(
        recipients, plan, frozenset(), None, tmp_path / "r.csv", Output(json_mode=False)
    )
    now = time.time()
    without = run.eta(now)
    run.waiting = {"t1_x": InstanceWait(WaitReason.THROTTLED, now + 58.0)}
    assert run.eta(now) == pytest.approx(without + 58.0)
    assert wait_text(run.waiting["t1_x"], now) == "throttled by the server: resuming in 58s"
    status = run._status_text(run.eta(now), run._held(), now)
    assert "about 1m 01s left" in status
    assert "t1_x throttled by the server: resuming in 58s" in status
    run.waiting = {"t1_x": InstanceWait(WaitReason.PACED, now + 0.5)}  # expected: not shown
    assert run._held() == {}
    assert run.eta(now) == pytest.approx(without)


def test_a_throttled_broadcast_says_so_in_its_log(
    capsys: pytest.CaptureFixture[str],
    thread_server: FakeWachat,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("WACHAT_API_KEY", KEY)
    monkeypatch.setenv("WACHAT_BASE_URL", thread_server.base_url)
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        api = wa.instances.create("store").instance.api_instance_name
    thread_server.scan(api)
    thread_server.inject(Fault.status(429, retry_after=1), path="/send/text", times=1)
    sheet = write_csv(tmp_path / "n.csv", ["number", "instance"], [["628100000001", api]])
    done = main(
        capsys, "send", "broadcast", str(sheet), "--campaign", "c", "--text", "Hi",
        "--pace", "0", "--jitter", "0", "--journal", str(tmp_path / "j.sqlite"),
    )  # fmt: skip
    assert done.code == 0, done
    assert f"{api}: throttled by the server: resuming in 1s" in done.out
