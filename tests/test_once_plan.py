"""One plan: ``bulk.plan`` judges specs by ``send_many``'s own rules (checks, repeated keys,
opt-outs), so what a dry run promises is what the run does; a dry run with an API key warns
about an instance that cannot send now instead of promising a duration for it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KEY
from tests.test_cli_helpers import main, write_csv
from wachat_async import AsyncWachat, BroadcastStatus, Pace, SendSpec, TextMessage, Wachat
from wachat_async.bulk import plan
from wachat_async.resources.messages import send_request
from wachat_async.testing import FakeWachat

S = BroadcastStatus


async def test_the_plan_and_the_run_judge_every_spec_alike(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    api = (await wa.instances.create("store")).instance.api_instance_name
    server.scan(api)
    numbers = ["628100000001", "+62 810-000-0001", "081234567", "628100000002", "628100000003"]
    specs = [SendSpec(instance=api, recipient=n, message=TextMessage("Hi")) for n in numbers]
    specs.append(SendSpec(instance=api, recipient="628100000004", message=TextMessage(" ")))
    options: dict[str, Any] = {"campaign": "c", "pace": Pace.off(), "opt_out": ["00628100000003"]}
    planned = await plan(specs, prepare=send_request, **options)
    results = [r async for r in wa.messages.send_many(specs, **options)]
    assert planned.messages == {api: Counter(r.status for r in results)[S.SENT]} == {api: 2}
    assert dict(planned.not_sent) == {S.INVALID: 3, S.OPTED_OUT: 1}
    assert Counter(r.status for r in results) == {S.SENT: 2, S.INVALID: 3, S.OPTED_OUT: 1}
    assert planned.specs == len(specs)
    assert planned.projected_seconds() == 0.0


def test_a_dry_run_warns_about_an_instance_that_cannot_send(
    capsys: pytest.CaptureFixture[str],
    thread_server: FakeWachat,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("WACHAT_API_KEY", KEY)
    monkeypatch.setenv("WACHAT_BASE_URL", thread_server.base_url)
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        ready = wa.instances.create("ready").instance.api_instance_name
        unscanned = wa.instances.create("unscanned").instance.api_instance_name
    thread_server.scan(ready)
    rows = [[f"6281{n:08d}", ready if n % 2 else unscanned] for n in range(40)]
    sheet = write_csv(tmp_path / "people.csv", ["number", "instance"], rows)
    words = ["send", "broadcast", str(sheet), "--campaign", "c", "--text", "Hi", "--dry-run"]
    done = main(capsys, *words, "--pace", "10", "--jitter", "0")
    assert done.code == 0, done
    assert f"Warning: instance {unscanned} is not connected (state connecting)" in done.out
    assert "about 3m 10s at this pace" in done.out  # the ready instance's 20, not both
    document = json.loads(main(capsys, "--json", *words).out.splitlines()[-1])["dry_run"]
    assert document["not_ready"] == {unscanned: "not connected (state connecting)"}
    assert not thread_server.sent_messages(ready)
