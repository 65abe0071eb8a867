"""``wachat provision``: PNG file names, the manifest, bad rows by line, clean refusals before
anything is sent, resuming with the journal, Ctrl-C, and faults that never duplicate."""

from __future__ import annotations

import asyncio
import csv
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from tests.conftest import KEY
from tests.test_cli_helpers import (
    ROOT,
    Done,
    env,
    eventually,
    main,
    pngs,
    read_manifest,
    spawn,
    wachat,
    write_csv,
)
from wachat_async import cli
from wachat_async.bulk import Journal
from wachat_async.cli.fields import BOOLEAN_FIELDS, CREATE_FIELDS
from wachat_async.cli.manifest import ManifestRow, spreadsheet_safe, write_manifest
from wachat_async.cli.pngnames import HASH_CHARS, png_name
from wachat_async.cli.sheet import line_ranges
from wachat_async.qr import PNG_SIGNATURE
from wachat_async.testing import FakeWachat, Fault

#: Names whose naive file names would collide, vanish, or be refused by some file system.
TRICKY = [
    "north/1",
    "north_1",
    "north 1",
    "!!!",
    "🎉🎉",
    "a:b",
    "a*b",
    "x" * 300,
    "Store",
    "store",
    "con",
]
HEADER = ["instance_name", "number", "reject_calls"]


def stores(n: int) -> list[list[str]]:
    return [[f"store_{i:04d}", f"6281{i:08d}", "true"] for i in range(n)]


@pytest.fixture
def server() -> Iterator[FakeWachat]:
    """A fake Wachat whose every QR code is unique (the shared fixture reuses four)."""
    with FakeWachat.in_thread(api_keys={KEY}) as fake:
        yield fake


def provision(
    capsys: pytest.CaptureFixture[str], server: FakeWachat, sheet: Path, out: Path, *extra: str
) -> Done:
    return main(
        capsys, "--api-key", KEY, "--base-url", server.base_url, "provision", str(sheet),
        "--out", str(out), *extra,
    )  # fmt: skip


# -- file names -----------------------------------------------------------------------------


def test_png_names_are_distinct_readable_bounded_and_stable() -> None:
    names = [png_name(n) for n in TRICKY]
    assert len(set(names)) == len(TRICKY)
    assert len({n.lower() for n in names}) == len(TRICKY)  # case-insensitive file systems too
    assert names == [png_name(n) for n in TRICKY]  # a re-run maps a name to the same file
    for name in names:
        assert len(name.encode()) < 100
        assert name.endswith(".png")
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-")
        assert not name.startswith((".", "-"))
    assert png_name("north_1") == "north_1.png"  # an unchanged name keeps itself
    assert png_name("store_0007") == "store_0007.png"
    assert png_name("north/1").startswith("north_1-")
    assert png_name("Jakarta Selatán").startswith("jakarta_selatan-")
    assert png_name("x" * 300) == "x" * 60 + png_name("x" * 300)[60:]
    assert png_name("con").startswith("con-")  # Windows refuses con.png
    hashed = png_name("north/1")
    assert png_name(hashed[: -len(".png")]) != hashed  # a name that looks hashed is hashed too
    assert len(hashed) == len("north_1-") + HASH_CHARS + len(".png")


def test_manifest_cells_are_safe_in_a_spreadsheet(tmp_path: Path) -> None:
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet_safe(cell) == "'" + cell
    assert spreadsheet_safe("store=1") == "store=1"
    rows = [
        ManifestRow(3, "=HYPERLINK()", None, "failed", error="-bad"),
        ManifestRow(2, "ok", "t1_x_ok", "created", png="ok.png"),
    ]
    write_manifest(tmp_path / "manifest.csv", rows)
    assert (tmp_path / "manifest.csv").read_bytes().startswith(b"\xef\xbb\xbfline,")
    assert read_manifest(tmp_path) == [
        {"line": "2", "instance_name": "ok", "api_instance_name": "t1_x_ok",
         "status": "created", "png": "ok.png", "error": "", "note": ""},
        {"line": "3", "instance_name": "'=HYPERLINK()", "api_instance_name": "",
         "status": "failed", "png": "", "error": "'-bad", "note": ""},
    ]  # fmt: skip


def test_line_ranges_say_which_rows_finished() -> None:
    assert line_ranges([5, 2, 3, 4, 9, 11, 12]) == "2-5, 9, 11-12"
    assert line_ranges(range(2, 40, 2), most=3) == "2, 4, 6, ..."


def test_a_spreadsheet_export_with_bom_and_crlf_reads(
    server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = tmp_path / "excel.csv"
    sheet.write_bytes(
        "\ufeffinstance_name , number,read_status\r\nkopi_kenangan,628111000001,Yes\r\n"
        ",,\r\n\r\n"
        'toko_"b",628111000002,NO\r\n'.encode()
    )
    done = provision(capsys, server, sheet, tmp_path / "qr", "--json")
    assert done.code == 0, done.err
    *rows, summary = done.lines()
    found = sorted((r["line"], r["instance_name"]) for r in rows)
    assert found == [(2, "kopi_kenangan"), (5, 'toko_"b"')]  # blank rows skipped, lines kept
    assert summary["total"] == 2
    assert server.instance("kopi_kenangan").options == {"readStatus": True}


def test_csv_columns_come_from_create_spec() -> None:
    assert CREATE_FIELDS[0] == "instance_name"
    assert {"number", "integration", "meta_token"} <= set(CREATE_FIELDS)
    assert {"reject_calls", "read_status"} <= BOOLEAN_FIELDS
    assert not BOOLEAN_FIELDS & {"instance_name", "number", "integration"}


# -- a whole run ----------------------------------------------------------------------------


def test_tricky_names_get_their_own_png_and_the_manifest_says_all(
    server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = tmp_path / "stores.csv"
    rows = [[name, f"62811100{i:04d}", "yes"] for i, name in enumerate(TRICKY)]
    rows += [
        ["north/1", "628111009999", ""],  # line 13: repeats line 2
        ["bad_flag", "628111009998", "maybe"],  # line 14
        ["=cmd()", "628111009997", "0"],  # line 15
        ["", "628111009996", ""],  # line 16
        ["bad_number", "62-81x", ""],  # line 17
    ]
    write_csv(sheet, [*HEADER, "[red]note\x1b[2J"], [[*r, "x"] for r in rows])
    out = tmp_path / "qr"
    done = provision(capsys, server, sheet, out)
    assert done.code == 1  # some rows failed
    assert "Ignoring column(s) that are not create fields: [red]note\\x1b[2J" in done.out
    assert "\x1b" not in done.out

    manifest = read_manifest(out)
    assert [int(r["line"]) for r in manifest] == list(range(2, 18))
    by_line = {int(r["line"]): r for r in manifest}
    assert "appears twice in the CSV (first on line 2)" in by_line[13]["error"]
    assert by_line[14]["error"] == (
        "reject_calls: 'maybe' is not a yes/no value (write true/false, yes/no or 1/0)"
    )
    assert by_line[15]["instance_name"] == "'=cmd()"  # safe in a spreadsheet
    assert by_line[15]["status"] == "created"
    assert "instance_name" in by_line[16]["error"]
    assert "digits" in by_line[17]["error"]
    assert {r["status"] for line, r in by_line.items() if line in (13, 14, 16, 17)} == {"failed"}

    created = [r for r in manifest if r["status"] == "created"]
    assert len(created) == len(TRICKY) + 1
    assert len(pngs(out)) == len(created)
    for row in created:
        served = server.instance(row["api_instance_name"])
        assert served.display_name == row["instance_name"].removeprefix("'")
        png = out / row["png"]
        assert png.read_bytes() == served.qr_png
        assert zxingcpp.read_barcodes(Image.open(png))[0].text == served.qr_code
    assert "Manifest: " + str(out / "manifest.csv") in done.out
    assert "Provisioned 16 rows: 12 created, 0 reconciled, 0 created earlier, 4 failed" in done.out


def test_json_streams_one_object_per_row_then_the_summary(
    server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = write_csv(tmp_path / "s.csv", [*HEADER, "extra"], [[*r, ""] for r in stores(25)])
    done = provision(capsys, server, sheet, tmp_path / "qr", "--json")
    assert done.code == 0
    *rows, summary = done.lines()
    assert sorted(r["line"] for r in rows) == list(range(2, 27))
    assert {r["status"] for r in rows} == {"created"}
    assert summary["summary"] == {"created": 25, "reconciled": 0, "created earlier": 0, "failed": 0}
    assert summary["ignored_columns"] == ["extra"]
    assert summary["manifest"] == str(tmp_path / "qr" / "manifest.csv")

    plain = provision(capsys, server, sheet, tmp_path / "qr")  # resumes: all skipped
    assert "… and 5 more in " in plain.out
    assert plain.out.count("\tcreated earlier\t") == 20


def test_a_rerun_skips_what_is_done_and_completes_the_pngs(
    server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = write_csv(tmp_path / "s.csv", HEADER, stores(6))
    out = tmp_path / "qr"
    assert provision(capsys, server, sheet, out).code == 0
    first = read_manifest(out)
    (out / "store_0001.png").unlink()
    (out / "store_0002.png").unlink()
    server.scan("store_0002")  # connected since: no QR code any more
    again = provision(capsys, server, sheet, out)
    assert again.code == 0
    manifest = read_manifest(out)
    assert {r["status"] for r in manifest} == {"created earlier"}
    assert [r["api_instance_name"] for r in manifest] == [r["api_instance_name"] for r in first]
    by_name = {r["instance_name"]: r for r in manifest}
    assert (out / "store_0001.png").read_bytes() == server.instance("store_0001").qr_png
    assert by_name["store_0002"]["png"] == ""
    assert by_name["store_0002"]["note"] == "already connected: no QR code"
    assert by_name["store_0003"]["png"] == "store_0003.png"
    assert len(server.instances) == 6
    assert (out / ".wachat-journal.sqlite").is_file()


def test_faults_never_duplicate_and_a_rerun_finishes(
    server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.chaos(
        0.25,
        [Fault.status(503), Fault.drop_after(), Fault.drop_before(), Fault.truncated()],
        seed=3,
        path="/instance/create",
    )
    sheet = write_csv(tmp_path / "s.csv", HEADER, stores(60))
    out = tmp_path / "qr"
    first = provision(capsys, server, sheet, out, "--timeout", "2", "--concurrency", "12")
    assert len(read_manifest(out)) == 60
    assert first.code in (0, 1)
    server.clear_faults()
    again = provision(capsys, server, sheet, out, "--json")
    assert again.code == 0
    assert len(server.instances) == 60
    assert all(server.count_instances(f"store_{i:04d}") == 1 for i in range(60))
    assert len(pngs(out)) == 60


# -- refused before anything is sent --------------------------------------------------------


def refusal(done: Done, server: FakeWachat, words: str) -> None:
    assert done.code == 2, done.err
    assert done.err.count("\n") == 1, done.err
    assert words in done.err
    assert "Traceback" not in done.err
    assert len(server.instances) == 0


def test_clean_refusals_send_nothing(
    server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_csv(tmp_path / "good.csv", HEADER, stores(3))
    out = tmp_path / "qr"

    def run(sheet: Path, *extra: str, folder: Path = out) -> Done:
        return provision(capsys, server, sheet, folder, *extra)

    refusal(run(tmp_path / "missing.csv"), server, "no such CSV file")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"instance_name,number\nok,628111\ncaf\xe9,628112\n")
    refusal(run(latin), server, "is not UTF-8 text (line 3")
    refusal(run(write_csv(tmp_path / "n.csv", ["name"], [["x"]])), server, "no instance_name")
    (tmp_path / "empty.csv").write_text("")
    refusal(run(tmp_path / "empty.csv"), server, "is empty")
    (tmp_path / "file").write_text("")
    refusal(run(good, folder=tmp_path / "file"), server, "is a file")
    refusal(run(good, "--journal", str(tmp_path)), server, "is a directory")
    refusal(run(good, "--journal", str(tmp_path / "no" / "j.sqlite")), server, "no such directory")
    (tmp_path / "damaged.sqlite").write_bytes(b"not a journal at all" * 100)
    refusal(run(good, "--journal", str(tmp_path / "damaged.sqlite")), server, "damaged")

    other = tmp_path / "other-account.sqlite"
    make_journal(other, api_key="another-key", base_url=server.base_url)
    refusal(run(good, "--journal", str(other)), server, "belongs to another account")
    elsewhere = tmp_path / "elsewhere.sqlite"
    make_journal(elsewhere, api_key=KEY, base_url="http://127.0.0.1:9/api/v1")
    done = run(good, "--json", "--journal", str(elsewhere))
    refusal(done, server, "JournalMismatchError")
    assert "was written for http://127.0.0.1:9/api/v1" in done.error()["message"]
    assert not out.exists() or not (out / "manifest.csv").exists()


def make_journal(path: Path, *, api_key: str, base_url: str) -> None:
    async def make() -> None:
        journal = await Journal.open(path, api_key=api_key, base_url=base_url)
        await journal.close()

    asyncio.run(make())


async def test_a_journal_in_use_is_refused_at_once(server: FakeWachat, tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "s.csv", HEADER, stores(3))
    path = tmp_path / "qr" / ".wachat-journal.sqlite"
    path.parent.mkdir()
    journal = await Journal.open(path, api_key=KEY, base_url=server.base_url)
    try:
        done = await asyncio.to_thread(
            wachat,
            "provision", str(sheet), "--out", str(path.parent),
            environ=env(WACHAT_API_KEY=KEY, WACHAT_BASE_URL=server.base_url),
        )  # fmt: skip
    finally:
        await journal.close()
    refusal(done, server, "in use by another process")
    assert not (path.parent / "manifest.csv").exists()


# -- Ctrl-C ---------------------------------------------------------------------------------


def interrupt(
    args: list[str], environ: dict[str, str], out: Path, sig: int = signal.SIGINT
) -> tuple[int, str]:
    """Start ``wachat ARGS``, send it ``sig`` (Ctrl-C) once a PNG is saved, and return its
    status and stderr."""
    process = spawn(*args, environ=environ)
    eventually(lambda: bool(pngs(out)) or process.poll() is not None)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


def test_ctrl_c_with_a_journal_says_rerun_and_the_rerun_resumes(
    server: FakeWachat, tmp_path: Path
) -> None:
    server.inject(Fault.slow(0.3), path="/instance/create", times=None)
    sheet = write_csv(tmp_path / "s.csv", HEADER, stores(40))
    out = tmp_path / "qr"
    args = ["provision", str(sheet), "--out", str(out), "--concurrency", "2"]
    environ = env(WACHAT_API_KEY=KEY, WACHAT_BASE_URL=server.base_url)
    code, err = interrupt(args, environ, out)
    assert code == cli.EXIT_INTERRUPTED
    assert "Traceback" not in err
    assert "re-run the same command to resume" in err
    finished = read_manifest(out)
    assert 0 < len(finished) < 40
    assert str(out / "manifest.csv") in err
    server.clear_faults()
    again = wachat(*args, environ=environ)
    assert again.code == 0, again.err
    manifest = read_manifest(out)
    assert len(manifest) == 40
    assert {r["status"] for r in manifest} <= {"created", "reconciled", "created earlier"}
    assert all(server.count_instances(f"store_{i:04d}") == 1 for i in range(40))
    assert len(pngs(out)) == 40


def test_a_killed_run_resumes_without_duplicates(server: FakeWachat, tmp_path: Path) -> None:
    server.inject(Fault.slow(0.2), path="/instance/create", times=None)
    sheet = write_csv(tmp_path / "s.csv", HEADER, stores(30))
    out = tmp_path / "qr"
    args = ["provision", str(sheet), "--out", str(out), "--concurrency", "4"]
    environ = env(WACHAT_API_KEY=KEY, WACHAT_BASE_URL=server.base_url)
    code, _ = interrupt(args, environ, out, signal.SIGKILL)  # no cleanup at all
    assert code == -signal.SIGKILL
    assert not (out / "manifest.csv").exists()
    server.clear_faults()
    again = wachat(*args, "--json", environ=environ)
    assert again.code == 0, again.err
    assert again.lines()[-1]["summary"]["created earlier"] > 0
    assert all(server.count_instances(f"store_{i:04d}") == 1 for i in range(30))
    assert len(read_manifest(out)) == len(pngs(out)) == 30


def test_ctrl_c_without_a_journal_says_what_finished(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "s.csv", HEADER, stores(200))
    out = tmp_path / "qr"
    args = ["--sandbox", "provision", str(sheet), "--out", str(out), "--rate", "20"]
    code, err = interrupt(args, env(), out)
    assert code == cli.EXIT_INTERRUPTED
    assert "Traceback" not in err
    assert "re-run" not in err
    finished = read_manifest(out)
    assert f"Interrupted after {len(finished)} of 200 rows (lines 2" in err
    assert "sandbox ran inside this command and is gone" in err
    assert not (out / ".wachat-journal.sqlite").exists()


# -- the README's job -----------------------------------------------------------------------


def test_the_readme_main_job_runs_in_the_sandbox(tmp_path: Path) -> None:
    example = ROOT / "examples" / "stores.csv"
    done = wachat("--sandbox", "provision", str(example), "--out", str(tmp_path / "qr-codes"))
    assert done.code == 0, done.err
    assert "Provisioned 10 rows: 10 created" in done.out
    with example.open() as handle:
        expected = {png_name(row["instance_name"]) for row in csv.DictReader(handle)}
    files = pngs(tmp_path / "qr-codes")
    assert {p.name for p in files} == expected
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in files)
