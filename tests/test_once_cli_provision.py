"""``wachat provision`` after a resume and after failures: rows an earlier run created say
``created earlier``; a re-run is suggested only for rows a re-run can help."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import KEY
from tests.test_cli_helpers import Done, main, read_manifest, write_csv
from wachat_async.testing import FakeWachat, Fault


def provision(
    capsys: pytest.CaptureFixture[str], server: FakeWachat, sheet: Path, out: Path
) -> Done:
    return main(
        capsys, "--api-key", KEY, "--base-url", server.base_url, "provision", str(sheet),
        "--out", str(out), "--concurrency", "1",
    )  # fmt: skip


def test_rows_that_failed_on_input_get_no_re_run_hint(
    capsys: pytest.CaptureFixture[str], thread_server: FakeWachat, tmp_path: Path
) -> None:
    rows = [["good_one", ""], ["bad_number", "not a number"], ["good_one", ""]]
    sheet = write_csv(tmp_path / "stores.csv", ["instance_name", "number"], rows)
    done = provision(capsys, thread_server, sheet, tmp_path / "qr")
    assert done.code == 1
    assert "failed" in done.out
    assert "re-run" not in done.out


def test_rows_the_server_failed_get_the_hint_and_then_say_created_earlier(
    capsys: pytest.CaptureFixture[str], thread_server: FakeWachat, tmp_path: Path
) -> None:
    rows = [["first"], ["second"], ["third"]]
    sheet = write_csv(tmp_path / "stores.csv", ["instance_name"], rows)
    thread_server.inject(Fault.status(403, message="limit"), path="/instance/create", times=1)
    first = provision(capsys, thread_server, sheet, tmp_path / "qr")
    assert first.code == 1
    assert "re-run the same command to retry the 1 row(s) the server failed" in first.out
    again = provision(capsys, thread_server, sheet, tmp_path / "qr")
    assert again.code == 0
    statuses = {r["instance_name"]: r["status"] for r in read_manifest(tmp_path / "qr")}
    failed_first = next(n for n in ("first", "second", "third") if statuses[n] == "created")
    assert statuses == {n: "created earlier" for n in statuses if n != failed_first} | {
        failed_first: "created"
    }
    assert "re-run" not in again.out
