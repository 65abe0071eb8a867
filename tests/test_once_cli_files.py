"""The CLI's broadcasts and provisioning as a careless user: no file a command writes is one it
reads or keeps (by name, through a symbolic or hard link, before it exists), arguments that are
not text, numbers that are not E.164 as written, and a results file in input order.

The commands run in this process (``cli.main``) against a sandbox in a thread."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import KEY
from tests.test_cli_helpers import Done, main, write_csv
from wachat_async import Wachat
from wachat_async.testing import FakeWachat, Fault

HEADER = ["number", "instance", "name"]
FAST = ["--pace", "0", "--jitter", "0"]


@pytest.fixture
def instance(thread_server: FakeWachat, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WACHAT_API_KEY", KEY)
    monkeypatch.setenv("WACHAT_BASE_URL", thread_server.base_url)
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        api = wa.instances.create("store").instance.api_instance_name
    thread_server.scan(api)
    return api


def broadcast(capsys: pytest.CaptureFixture[str], csv_path: Path, *args: str) -> Done:
    return main(
        capsys, "send", "broadcast", str(csv_path), "--campaign", "c", "--text", "Hi {name}",
        *FAST, *args,
    )  # fmt: skip


def recipients(folder: Path, instance: str, count: int = 3) -> Path:
    rows = [[f"6281{n:08d}", instance, f"N{n}"] for n in range(count)]
    return write_csv(folder / "people.csv", HEADER, rows)


def hard_link(source: Path, target: Path) -> None:
    os.link(source, target)


def symlink(source: Path, target: Path) -> None:
    target.symlink_to(source)


@pytest.mark.parametrize("make", [symlink, hard_link])
@pytest.mark.parametrize("victim", ["opt-out", "csv"])
def test_results_that_are_an_input_under_another_name_are_refused(
    capsys: pytest.CaptureFixture[str],
    thread_server: FakeWachat,
    instance: str,
    tmp_path: Path,
    make: Callable[[Path, Path], None],
    victim: str,
) -> None:
    people = recipients(tmp_path, instance)
    opt_out = tmp_path / "opt-out.txt"
    opt_out.write_text("628100000001\n")
    before = {p: p.read_bytes() for p in (people, opt_out)}
    alias = tmp_path / "alias.csv"
    make(opt_out if victim == "opt-out" else people, alias)
    done = broadcast(
        capsys, people, "--opt-out", str(opt_out), "--results", str(alias),
        "--journal", str(tmp_path / "j.sqlite"),
    )  # fmt: skip
    assert done.code == 2, done
    assert "writing it would destroy it" in done.err
    assert {p: p.read_bytes() for p in (people, opt_out)} == before
    assert thread_server.sent_messages(instance) == []


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_results_that_are_the_journal_are_refused_before_the_journal_exists(
    capsys: pytest.CaptureFixture[str],
    thread_server: FakeWachat,
    instance: str,
    tmp_path: Path,
    suffix: str,
) -> None:
    people = recipients(tmp_path, instance)
    journal = tmp_path / "j.sqlite"
    (tmp_path / "sub").mkdir()
    done = broadcast(
        capsys, people, "--journal", str(journal),
        "--results", str(tmp_path / "sub" / ".." / f"j.sqlite{suffix}"),
    )  # fmt: skip
    assert done.code == 2, done
    assert "journal" in done.err
    assert not journal.exists()
    assert thread_server.sent_messages(instance) == []


def test_a_journal_that_is_the_opt_out_list_is_refused(
    capsys: pytest.CaptureFixture[str], thread_server: FakeWachat, instance: str, tmp_path: Path
) -> None:
    people = recipients(tmp_path, instance)
    opt_out = tmp_path / "opt-out.txt"
    opt_out.write_text("")
    done = broadcast(capsys, people, "--opt-out", str(opt_out), "--journal", str(opt_out))
    assert done.code == 2, done
    assert opt_out.read_bytes() == b""
    assert thread_server.sent_messages(instance) == []


def test_provisioning_never_writes_its_manifest_over_its_csv(
    capsys: pytest.CaptureFixture[str], thread_server: FakeWachat, instance: str, tmp_path: Path
) -> None:
    sheet = write_csv(tmp_path / "manifest.csv", ["instance_name"], [["new_store"]])
    before = sheet.read_bytes()
    done = main(capsys, "provision", str(sheet), "--out", str(tmp_path))
    assert done.code == 2, done
    assert "--out" in done.err
    assert "the CSV" in done.err
    assert sheet.read_bytes() == before
    assert thread_server.count_instances("new_store") == 0


def test_an_argument_that_is_not_text_is_a_usage_error_by_argument(
    capsys: pytest.CaptureFixture[str], instance: str, tmp_path: Path
) -> None:
    people = recipients(tmp_path, instance)
    done = main(
        capsys, "send", "broadcast", str(people), "--campaign", "c", "--text", "Hi \udcff",
        "--journal", str(tmp_path / "j.sqlite"),
    )  # fmt: skip
    assert done.code == 2
    assert "--text" in done.err
    assert "not valid text" in done.err
    assert "Traceback" not in done.err
    done = main(capsys, "send", "text", instance, "62810000000\udce9", "hello")
    assert done.code == 2
    assert "argument 4" in done.err
    assert "Traceback" not in done.err


def test_numbers_that_are_not_e164_are_rows_not_sent_by_line(
    capsys: pytest.CaptureFixture[str], thread_server: FakeWachat, instance: str, tmp_path: Path
) -> None:
    rows = [["081234567890", instance, "A"], ["004915123456789", instance, "B"]]
    rows.append(["+4915123456789", instance, "C"])
    people = write_csv(tmp_path / "people.csv", HEADER, rows)
    results = tmp_path / "results.csv"
    done = broadcast(
        capsys, people, "--journal", str(tmp_path / "j.sqlite"), "--results", str(results)
    )
    assert done.code == 1, done
    with results.open(encoding="utf-8-sig", newline="") as handle:
        by_line = {r["line"]: r for r in csv.DictReader(handle)}
    assert by_line["2"]["status"] == "invalid"
    assert "national prefix" in by_line["2"]["error"]
    assert by_line["3"]["status"] == "invalid"
    assert "+4915123456789" in by_line["3"]["error"]
    assert by_line["4"]["status"] == "sent"
    assert [m["body"]["number"] for m in thread_server.sent_messages(instance)] == ["4915123456789"]


def test_the_results_file_is_in_input_order(
    capsys: pytest.CaptureFixture[str], thread_server: FakeWachat, instance: str, tmp_path: Path
) -> None:
    # Bad rows finish first (they never reach an instance): completion order is not line order.
    rows = [[f"6281{n:08d}", instance, f"N{n}"] for n in range(6)]
    rows[1][0] = rows[4][0] = "not a number"
    people = write_csv(tmp_path / "people.csv", HEADER, rows)
    results = tmp_path / "results.csv"
    broadcast(capsys, people, "--journal", str(tmp_path / "j.sqlite"), "--results", str(results))
    with results.open(encoding="utf-8-sig", newline="") as handle:
        lines = [int(r["line"]) for r in csv.DictReader(handle)]
    assert lines == [2, 3, 4, 5, 6, 7]


def test_an_unknown_message_says_how_to_resend_it_in_the_commands_words(
    capsys: pytest.CaptureFixture[str], thread_server: FakeWachat, instance: str, tmp_path: Path
) -> None:
    people = recipients(tmp_path, instance, count=1)
    results = tmp_path / "results.csv"
    journal = tmp_path / "j.sqlite"
    thread_server.inject(Fault.status(500), path="/send/text", times=1)  # may have been sent
    for _ in range(2):  # ambiguous now, then: an earlier run may have sent it
        done = broadcast(capsys, people, "--journal", str(journal), "--results", str(results))
        assert done.code == 1, done
        with results.open(encoding="utf-8-sig", newline="") as handle:
            (row,) = csv.DictReader(handle)
        assert row["status"] == "unknown"
        assert row["error"].endswith(" (--resend-unknown resends it)")
        assert "resend_unknown=True" not in row["error"]
    assert "an earlier run may have sent this message" in row["error"]


def test_a_qr_png_is_never_saved_over_the_csv(
    capsys: pytest.CaptureFixture[str], thread_server: FakeWachat, instance: str, tmp_path: Path
) -> None:
    # The CSV is named like the PNG of one of its rows, in the --out folder.
    sheet = write_csv(tmp_path / "people.png", ["instance_name"], [["people"], ["other"]])
    before = sheet.read_bytes()
    done = main(capsys, "provision", str(sheet), "--out", str(tmp_path))
    assert done.code == 1, done
    assert sheet.read_bytes() == before
    with (tmp_path / "manifest.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = {r["instance_name"]: r for r in csv.DictReader(handle)}
    assert rows["people"]["png"] == ""
    assert "people.png is the CSV" in rows["people"]["note"]
    assert rows["other"]["png"] == "other.png"
