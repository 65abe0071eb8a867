"""``wachat send broadcast``: one rendered message per recipient over several instances, bad rows
by line, opt-outs, the dry run, the results file, resuming with the journal, Ctrl-C, refusals
before anything is sent, and output that never cuts an API name.

The server is a sandbox on loopback (``FakeWachat`` in a thread); instances are created and
scanned through its in-process API, and the command runs as a separate process (or, where a
test changes a module setting, in this one)."""

from __future__ import annotations

import asyncio
import csv
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import KEY
from tests.test_cli_helpers import (
    Done,
    env,
    eventually,
    main,
    on_terminal,
    spawn,
    wachat,
    write_csv,
)
from wachat_async import Pace, Wachat, cli
from wachat_async.bulk import Journal
from wachat_async.cli import broadcast
from wachat_async.cli import send as send_commands
from wachat_async.cli.broadcast import Broadcasting, Plan, ResultRow
from wachat_async.cli.output import Output
from wachat_async.cli.parser import parse
from wachat_async.cli.recipients import Recipients, Template
from wachat_async.testing import FakeWachat, Fault

TEXT = "Hi {name}, order {order} has shipped"
FAST = ["--pace", "0", "--jitter", "0"]
#: Long enough that a table at 80 columns cannot show it beside anything else.
LONG = "jakarta_selatan_kebayoran_baru_blok_m_plaza_lantai_dua"


def connected(server: FakeWachat, *names: str) -> list[str]:
    """Instances created and scanned; their API names."""
    api_names: list[str] = []
    with Wachat(KEY, base_url=server.base_url) as wa:
        for name in names:
            api = wa.instances.create(name).instance.api_instance_name
            server.scan(api)
            api_names.append(api)
    return api_names


def number(n: int) -> str:
    return f"6281{n:08d}"


def good_rows(instances: list[str], count: int) -> list[list[str]]:
    """``number, instance, name, order`` rows, alternating between the instances."""
    return [[number(i), instances[i % len(instances)], f"Name{i}", f"A-{i}"] for i in range(count)]


HEADER = ["number", "instance", "name", "order"]


def server_env(server: FakeWachat) -> dict[str, str]:
    return env(WACHAT_API_KEY=KEY, WACHAT_BASE_URL=server.base_url)


def send(server: FakeWachat, *args: str) -> Done:
    """``wachat send broadcast ARGS`` as a separate process against ``server``."""
    return wachat("send", "broadcast", *args, environ=server_env(server))


def read_results(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def texts(server: FakeWachat, instance: str) -> Counter[tuple[str, str]]:
    """What the instance sent: (number, text) with how often."""
    return Counter(
        (m["body"]["number"], m["body"]["message"]) for m in server.sent_messages(instance)
    )


def per_number(server: FakeWachat, *instances: str) -> Counter[str]:
    return Counter(m["body"]["number"] for i in instances for m in server.sent_messages(i))


# -- a whole run ----------------------------------------------------------------------------


def test_each_recipient_gets_one_rendered_message_and_bad_rows_are_named_by_line(
    thread_server: FakeWachat, tmp_path: Path
) -> None:
    a, b = connected(thread_server, "north", "south")
    rows = good_rows([a, b], 20)
    rows[5][2] = ""  # line 7: no name for {name}
    rows += [
        ["62-abc", a, "Bad", "B-1"],  # line 22: not a number
        [number(1), b, "Again", "B-2"],  # line 23: repeats line 3
        ["=cmd()", b, "Formula", "B-3"],  # line 24: neither; a formula in a spreadsheet
        [number(30), "", "Nobody", "B-4"],  # line 25: no instance, no --instance
    ]
    sheet = write_csv(tmp_path / "customers.csv", HEADER, rows)
    opt_out = tmp_path / "opt-out.txt"
    opt_out.write_text(f"# asked to stop\n\n+62 81 0000 0003  # line 5\n{number(99)}\n")
    journal = tmp_path / "journal.sqlite"
    args = [str(sheet), "--campaign", "spring", "--text", TEXT, *FAST]
    args += ["--journal", str(journal), "--opt-out", str(opt_out)]

    done = send(thread_server, *args)
    assert done.code == 1, done.err  # some rows were not sent
    assert "Traceback" not in done.err
    sent = {i: number(i) for i in range(20) if i not in (3, 5)}
    for instance, parity in ((a, 0), (b, 1)):
        expected = {
            (n, f"Hi Name{i}, order A-{i} has shipped"): 1
            for i, n in sent.items()
            if i % 2 == parity
        }
        assert texts(thread_server, instance) == expected
    assert not any("{" in text for _, text in texts(thread_server, a) + texts(thread_server, b))

    results = tmp_path / "spring-results.csv"  # beside the journal
    assert results.read_bytes().startswith(b"\xef\xbb\xbfline,instance,recipient,status,")
    by_line = {int(r["line"]): r for r in read_results(results)}
    assert sorted(by_line) == list(range(2, 26))
    assert by_line[7]["error"] == "no value for {name} in this row"
    assert "digits" in by_line[22]["error"]
    assert by_line[23]["error"] == (
        f"{number(1)} appears again for instance {b} in this CSV "
        "(first on line 3; one message per number and instance)"
    )
    assert by_line[24]["recipient"] == "'=cmd()"  # safe in a spreadsheet
    assert by_line[25]["error"].startswith("no instance")
    assert by_line[5]["status"] == "opted_out"
    assert {by_line[line]["status"] for line in (7, 22, 23, 24, 25)} == {"invalid"}
    for i, recipient in sent.items():
        row = by_line[i + 2]
        assert (row["status"], row["recipient"]) == ("sent", recipient)
        assert row["instance"] == (a if i % 2 == 0 else b)
        ids = {m["id"] for m in thread_server.sent_messages(row["instance"])}
        assert row["message_id"] in ids
    counts = "18 sent, 0 skipped, 0 unknown, 0 failed, 5 invalid, 1 opted_out, 0 paused"
    assert f"Broadcast spring: 24 rows: {counts}" in done.out
    assert f"Results: {results}" in done.out
    shown = [int(row.split("\t")[0]) for row in done.out.splitlines() if "\tinvalid\t" in row]
    assert shown == [7, 22, 23, 24, 25]  # by line, whatever order they were found in

    again = send(thread_server, "--json", *args)  # the same command: all done already
    *lines, summary = again.lines()
    assert lines[0]["broadcast"]["messages"] == 18
    assert summary["summary"]["skipped"] == 18
    assert summary["summary"]["sent"] == 0
    assert per_number(thread_server, a, b) == Counter(sent.values())  # nothing sent twice
    rows_again = {r["line"]: r for r in lines[1:]}
    assert rows_again[2]["message_id"] == by_line[2]["message_id"]
    assert len(read_results(results)) == 24  # the results file says the re-run's story


def test_a_clean_run_exits_0_and_json_streams_rows_with_an_eta(
    thread_server: FakeWachat, tmp_path: Path
) -> None:
    (a,) = connected(thread_server, "only")
    sheet = write_csv(tmp_path / "c.csv", ["number", "name"], [[number(i), "x"] for i in range(4)])
    done = send(
        thread_server, "--json", str(sheet), "--campaign", "c", "--instance", a,
        "--text", "Hello {name}", "--pace", "0.01", "--jitter", "0",
        "--journal", str(tmp_path / "j.sqlite"), "--results", str(tmp_path / "out.csv"),
    )  # fmt: skip
    assert done.code == 0, done.err
    start, *rows, summary = done.lines()
    assert start["broadcast"]["pace"]["interval"] == 0.01
    assert start["broadcast"]["results"] == str(tmp_path / "out.csv")
    assert [r["status"] for r in rows] == ["sent"] * 4
    assert all(r["eta_seconds"] >= 0 for r in rows)
    assert rows[-1]["eta_seconds"] == 0
    assert summary["instances"] == [
        {"instance": a, "messages": 4, "sent": 4, "skipped": 0, "unknown": 0, "failed": 0,
         "paused": 0, "paused_because": None}
    ]  # fmt: skip
    assert len(read_results(tmp_path / "out.csv")) == 4


def test_media_keys_and_the_default_instance(
    thread_server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = connected(thread_server, "media_a", "media_b")
    sheet = write_csv(
        tmp_path / "m.csv",
        ["number", "instance", "key", "file"],
        [
            [number(1), "", "k1", "one"],  # --instance
            [number(1), "", "k2", "two"],  # another key: another message
            [number(1), "", "k2", "three"],  # line 4: the same key again
            [number(2), b, "", "four"],
        ],
    )
    done = main(
        capsys, "--api-key", KEY, "--base-url", thread_server.base_url, "send", "broadcast",
        str(sheet), "--campaign", "m", "--instance", a, "--text", "Your {file}",
        "--media-url", "https://cdn.example.com/{file}.jpg", *FAST,
        "--journal", str(tmp_path / "j.sqlite"),
    )  # fmt: skip
    assert done.code == 1
    assert "4\tinvalid\t" in done.out
    assert "key 'k2' appears again in this CSV (first on line 3; one message per key)" in done.out
    bodies = [m["body"] for m in thread_server.sent_messages(a)]
    assert [(m["type"], m["mediaUrl"], m["message"]) for m in bodies] == [
        ("image", "https://cdn.example.com/one.jpg", "Your one"),
        ("image", "https://cdn.example.com/two.jpg", "Your two"),
    ]
    assert [m["body"]["mediaUrl"] for m in thread_server.sent_messages(b)] == [
        "https://cdn.example.com/four.jpg"
    ]


def test_piped_runs_print_a_progress_line_now_and_then(
    thread_server: FakeWachat,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (a,) = connected(thread_server, "logged")
    monkeypatch.setattr(broadcast, "PLAIN_EVERY", 0.0)  # a line per row
    monkeypatch.chdir(tmp_path)
    sheet = write_csv(tmp_path / "p.csv", ["number"], [[number(i)] for i in range(3)])
    done = main(
        capsys, "--api-key", KEY, "--base-url", thread_server.base_url, "send", "broadcast",
        str(sheet), "--campaign", "Spring sale!", "--instance", a, "--text", "Hi",
        "--pace", "0.01", "--jitter", "0",
    )  # fmt: skip
    assert done.code == 0, done.err
    assert "Pace: each instance sends a message every 0.01 s" in done.out
    assert "1 of 3 rows done: 1 sent" in done.out
    assert "3 of 3 rows done: 3 sent" in done.out
    assert (tmp_path / ".wachat-journal.sqlite").is_file()  # the default journal, here
    (results,) = tmp_path.glob("spring_sale-*-results.csv")  # a safe name for the campaign
    assert len(read_results(results)) == 3


# -- the dry run ----------------------------------------------------------------------------


def test_dry_run_shows_the_plan_and_sends_nothing(
    thread_server: FakeWachat, tmp_path: Path
) -> None:
    a, b = connected(thread_server, "dry_a", "dry_b")
    rows = good_rows([a, b], 9)
    rows[2][2] = " "  # line 4: an empty name
    sheet = write_csv(tmp_path / "d.csv", HEADER, [*rows, ["123", a, "Short", "C"]])
    opt_out = tmp_path / "stop.txt"
    opt_out.write_text(number(1) + "\n")
    args = [str(sheet), "--campaign", "d", "--text", TEXT, "--dry-run", "--opt-out", str(opt_out)]
    args += ["--pace", "2", "--jitter", "1", "--journal", str(tmp_path / "j.sqlite")]
    pace = Pace(interval=2, jitter=1)

    human = wachat("send", "broadcast", *args, environ=env())  # no key: no client at all
    assert human.code == 1, human.err  # rows that would not be sent
    assert "Dry run: nothing is sent." in human.out
    assert "Campaign d: 10 rows, 7 messages from 2 instance(s), 3 rows that are not sent" in (
        human.out
    )
    assert "Pace: each instance sends a message every 2-3 s" in human.out
    assert f"{a}\t4\t" in human.out  # lines 2, 6, 8, 10
    assert f"{b}\t3\t" in human.out  # lines 5, 7, 9 (3 is opted out)
    assert f"2\t{a}\t{number(0)}\tHi Name0, order A-0 has shipped" in human.out
    assert f"4\tinvalid\t{a}\t{number(2)}\tno value for {{name}} in this row" in human.out
    assert f"3\topted_out\t{b}\t{number(1)}" in human.out
    assert "11\tinvalid\t" in human.out

    as_json = wachat("--json", "send", "broadcast", *args, environ=env())
    *problems, last = as_json.lines()
    assert [(p["line"], p["status"]) for p in problems] == [
        (3, "opted_out"), (4, "invalid"), (11, "invalid")
    ]  # fmt: skip
    plan = last["dry_run"]
    assert (plan["rows"], plan["messages"]) == (10, 7)
    assert plan["not_sent"] == {"invalid": 2, "opted_out": 1}
    assert plan["instances"] == [
        {"instance": a, "messages": 4, "projected_seconds": pace.projected_seconds(4)},
        {"instance": b, "messages": 3, "projected_seconds": pace.projected_seconds(3)},
    ]
    assert plan["projected_seconds"] == pace.projected_seconds(4)  # the slowest instance
    assert plan["pace"]["interval"] == 2
    assert thread_server.sent_messages(a) == thread_server.sent_messages(b) == []
    assert not (tmp_path / "j.sqlite").exists()
    assert not list(tmp_path.glob("*results*"))


def test_the_pace_defaults_are_the_librarys(capsys: pytest.CaptureFixture[str]) -> None:
    words = ["send", "broadcast", "x.csv", "--campaign", "c", "--text", "t"]
    args = parse(words, [send_commands.add_commands])
    assert (args.interval, args.jitter, args.hourly, args.daily, args.warmup_messages) == (
        None,
        None,
        None,
        None,
        None,
    )  # fmt: skip  (so Pace() decides)
    default = Pace()
    shown = " ".join(main(capsys, "send", "broadcast", "--help").out.split())
    assert f"between two messages (default: {default.interval:g})" in shown
    assert f"at random (default: {default.jitter:g})" in shown
    assert "in any hour (default: none)" in shown
    assert broadcast.pace_text(default) == (
        f"each instance sends a message every {default.interval:g}-"
        f"{default.interval + default.jitter:g} s"
    )


# -- refused before anything is sent --------------------------------------------------------


def refused(done: Done, words: str, server: FakeWachat, *instances: str) -> None:
    assert done.code == 2, (done.out, done.err)
    assert done.err.count("\n") == 1, done.err
    assert words in done.err
    assert "Traceback" not in done.err
    assert all(server.sent_messages(i) == [] for i in instances)


def test_clean_refusals_send_nothing(
    thread_server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (a,) = connected(thread_server, "refusing")
    sheet = write_csv(tmp_path / "r.csv", ["number", "name"], [[number(1), "Ayu"]])
    journal = tmp_path / "j.sqlite"

    def run(*args: str, csv_file: Path = sheet, text: str = "Hi {name}") -> Done:
        return main(
            capsys, "--api-key", KEY, "--base-url", thread_server.base_url, "send", "broadcast",
            str(csv_file), "--campaign", "r", "--text", text, *args,
        )  # fmt: skip

    with_instance = ["--instance", a, "--journal", str(journal)]
    done = run(*with_instance, text="Hi {nmae}, {name} {order}")
    refused(done, "the message uses {nmae}, {order}, but", thread_server, a)
    assert "(its columns: number, name)" in done.err
    refused(run(*with_instance, text="Hi {name!r}"), "--text: template placeholder", thread_server)
    refused(
        run(*with_instance, text="Hi {name"), "--text: the template is not valid", thread_server
    )
    refused(
        run("--journal", str(journal)), "has no instance column: give --instance", thread_server
    )
    no_number = write_csv(tmp_path / "n.csv", ["phone"], [[number(1)]])
    refused(run(*with_instance, csv_file=no_number), "has no number column", thread_server)
    refused(run(*with_instance, csv_file=tmp_path / "none.csv"), "no such CSV file", thread_server)
    refused(run(*with_instance, "--media-type", "image"), "--media-type goes with", thread_server)
    refused(
        run(*with_instance, "--media-url", "https://cdn.example.com/file"),
        "give --media-type",
        thread_server,
    )
    bad_opt_out = tmp_path / "bad.txt"
    bad_opt_out.write_text(f"{number(1)}\n# fine\nnot-a-number\n")
    refused(
        run(*with_instance, "--opt-out", str(bad_opt_out)), f"{bad_opt_out}, line 3:", thread_server
    )
    refused(run(*with_instance, "--results", str(tmp_path)), "is a folder", thread_server)
    refused(run("--instance", a, "--journal", str(tmp_path)), "is a directory", thread_server)
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"not a journal at all" * 100)
    refused(run("--instance", a, "--journal", str(damaged)), "damaged", thread_server)
    other = tmp_path / "other.sqlite"
    asyncio.run(make_journal(other, api_key="another-key", base_url=thread_server.base_url))
    refused(run("--instance", a, "--journal", str(other)), "another account", thread_server)
    refused(
        run("--sandbox", "--instance", a, "--journal", str(journal)), "--sandbox", thread_server
    )

    usage = run(*with_instance, "--pace", "-1")
    assert usage.code == 2
    assert "argument --pace: the value must be a finite number of seconds" in usage.err
    assert run(*with_instance, "--per-hour", "1.5").code == 2
    as_json = run("--json", *with_instance, text="{nope}")
    assert as_json.code == 2
    assert as_json.error()["type"] == "UsageError"
    assert not journal.exists()
    assert not list(tmp_path.glob("*results*"))
    assert thread_server.sent_messages(a) == []


async def make_journal(path: Path, *, api_key: str, base_url: str) -> None:
    journal = await Journal.open(path, api_key=api_key, base_url=base_url)
    await journal.close()


async def test_a_journal_in_use_is_refused_at_once(
    thread_server: FakeWachat, tmp_path: Path
) -> None:
    (a,) = await asyncio.to_thread(connected, thread_server, "busy")
    sheet = write_csv(tmp_path / "b.csv", ["number"], [[number(1)], [number(2)]])
    path = tmp_path / "j.sqlite"
    journal = await Journal.open(path, api_key=KEY, base_url=thread_server.base_url)
    try:
        done = await asyncio.to_thread(
            send, thread_server, str(sheet), "--campaign", "b", "--instance", a, "--text", "Hi",
            "--journal", str(path), *FAST,
        )  # fmt: skip
    finally:
        await journal.close()
    refused(done, "in use by another process", thread_server, a)
    assert done.out == ""  # nothing shown as started
    assert not (tmp_path / "b-results.csv").exists()


# -- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_says_how_to_resume_and_the_rerun_sends_each_message_once(
    thread_server: FakeWachat, tmp_path: Path
) -> None:
    a, b = connected(thread_server, "stop_a", "stop_b")
    thread_server.inject(Fault.slow(0.5), path="/send/text", times=None)  # mostly in flight
    sheet = write_csv(tmp_path / "s.csv", HEADER, good_rows([a, b], 20))
    args = ["send", "broadcast", str(sheet), "--campaign", "stop", "--text", TEXT]
    args += ["--journal", str(tmp_path / "j.sqlite")]
    process = spawn(*args, "--pace", "0.2", "--jitter", "0", environ=server_env(thread_server))
    eventually(lambda: per_number(thread_server, a, b).total() >= 2 or process.poll() is not None)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == cli.EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert "Interrupted after " in err
    assert (
        "re-run the same command to resume; messages that were in flight are reported as "
        "unknown, not resent (use --resend-unknown to resend them)"
    ) in err
    first = read_results(tmp_path / "stop-results.csv")
    assert len(first) < 20  # what finished (a message in flight has no line yet)

    thread_server.clear_faults()
    again = wachat(*args, "--json", *FAST, environ=server_env(thread_server))
    *rows, summary = again.lines()[1:]
    assert again.code in (0, 1), again.err  # 1 when a message was in flight: unknown
    unknown = {r["recipient"] for r in rows if r["status"] == "unknown"}
    assert len(unknown) <= 2  # at most the one in flight on each instance
    assert summary["summary"]["skipped"] + len(unknown) >= 2  # what the server had by Ctrl-C
    assert summary["summary"]["sent"] + summary["summary"]["skipped"] + len(unknown) == 20
    received = per_number(thread_server, a, b)
    for i in range(20):
        assert received[number(i)] == 1 or (number(i) in unknown and received[number(i)] <= 1)
    for row in rows:
        if row["status"] == "unknown":
            assert "not resent (--resend-unknown resends it)" in row["error"]


def test_without_a_journal_an_interrupt_says_which_lines_were_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = write_csv(tmp_path / "n.csv", ["number"], [[number(i)] for i in range(6)])
    recipients = Recipients.open(
        sheet, Template.given("Hi", None, None), campaign="n", instance="t1_x"
    )
    plan = asyncio.run(Plan.read(recipients, frozenset(), Pace.off()))
    run = Broadcasting(
        recipients, plan, frozenset(), None, tmp_path / "r.csv", Output(json_mode=False)
    )
    assert "before anything was sent" in run.interrupted(sandbox=True).message
    run._start()  # what send_many calls on reading the first row
    for line in (2, 3, 4, 6):
        run._add(ResultRow(line, "t1_x", number(line), "sent", f"id{line}"))
    run.close()
    message = run.interrupted(sandbox=True).message
    assert "Interrupted after 4 of 6 rows (4 sent now; results so far in " in message
    assert "Sent: lines 2-4, 6; messages in flight when it stopped may or may not" in message
    assert "running the command again would send every row again" in message
    assert "The sandbox ran inside this command and is gone." in message
    assert len(read_results(tmp_path / "r.csv")) == 4


def test_the_sandbox_has_no_instances_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sheet = write_csv(tmp_path / "s.csv", ["number"], [[number(i)] for i in range(3)])
    done = main(
        capsys, "--sandbox", "send", "broadcast", str(sheet), "--campaign", "s",
        "--instance", "t1_nowhere", "--text", "Hi", *FAST,
    )  # fmt: skip
    assert done.code == 1
    assert "0 sent" in done.out
    assert "instance t1_nowhere not found" in done.out
    assert "--sandbox runs an empty Wachat inside this command" in done.out
    assert not (tmp_path / ".wachat-journal.sqlite").exists()  # none with --sandbox
    assert (tmp_path / "s-results.csv").is_file()


# -- output ---------------------------------------------------------------------------------


@pytest.fixture
def long_names(thread_server: FakeWachat, tmp_path: Path) -> tuple[list[str], Path]:
    names = connected(thread_server, f"{LONG}_a", f"{LONG}_b")
    rows = [*good_rows(names, 6), ["62-abc", names[1], "Bad", "x"]]
    return names, write_csv(tmp_path / "long.csv", HEADER, rows)


@pytest.mark.parametrize("columns", [80, 200])
def test_a_terminal_never_cuts_an_api_name(
    columns: int,
    thread_server: FakeWachat,
    long_names: tuple[list[str], Path],
    tmp_path: Path,
) -> None:
    names, sheet = long_names
    done = on_terminal(
        "send", "broadcast", str(sheet), "--campaign", f"t{columns}", "--text", TEXT,
        "--pace", "0.05", "--jitter", "0", "--journal", str(tmp_path / "j.sqlite"),
        columns=columns, environ=server_env(thread_server),
    )  # fmt: skip
    assert done.code == 1, done.out
    lines = done.out.splitlines()
    for api_name in names:
        assert any(api_name in line for line in lines), done.out
    assert "…" not in done.out  # nothing shortened
    assert "Broadcast t" in done.out


def test_piped_output_is_plain_and_never_cuts_an_api_name(
    thread_server: FakeWachat, long_names: tuple[list[str], Path], tmp_path: Path
) -> None:
    names, sheet = long_names
    done = wachat(
        "send", "broadcast", str(sheet), "--campaign", "piped", "--text", TEXT, *FAST,
        "--journal", str(tmp_path / "j.sqlite"),
        environ=server_env(thread_server) | {"COLUMNS": "40"},
    )  # fmt: skip
    assert done.code == 1
    for api_name in names:
        assert f"{api_name}\t3\t3\t0\t0\t" in done.out
    assert f"8\tinvalid\t{names[1]}\t62-abc\t" in done.out
    assert not set(done.out) & set("┃│━─┏└")
    assert "\x1b" not in done.out
