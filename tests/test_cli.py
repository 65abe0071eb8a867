"""The wachat command: provisioning a CSV (whole, interrupted and resumed, under faults, with bad
rows), the sandbox, and the instance and send commands."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from tests.conftest import KEY
from wachat_async import Wachat, cli
from wachat_async.qr import PNG_SIGNATURE
from wachat_async.testing import FakeWachat, Fault

ROOT = Path(__file__).resolve().parents[1]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def stores(n: int) -> list[dict[str, str]]:
    return [
        {"instance_name": f"store_{i:04d}", "number": f"6281{i:08d}", "reject_calls": "true"}
        for i in range(n)
    ]


def run_cli(server: FakeWachat, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["--api-key", KEY, "--base-url", server.base_url, *args])
    return code, capsys.readouterr().out


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


@pytest.mark.slow
def test_a_thousand_rows_give_a_thousand_instances_and_pngs(
    thread_server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = write_csv(tmp_path / "stores.csv", stores(1000))
    code, out = run_cli(
        thread_server,
        "--json",
        "provision",
        str(sheet),
        "--out",
        str(tmp_path / "qr"),
        "--concurrency",
        "16",
        capsys=capsys,
    )
    assert code == 0
    rows = json_lines(out)
    assert rows[-1] == {
        "summary": {"created": 1000, "reconciled": 0, "skipped": 0, "failed": 0},
        "total": 1000,
    }
    assert len(thread_server.instances) == 1000
    files = pngs(tmp_path / "qr")
    assert len(files) == 1000
    assert all(f.read_bytes().startswith(PNG_SIGNATURE) for f in files)
    by_name = {i.display_name: i for i in thread_server.instances.values()}
    for sample in files[::97]:  # a phone reads what the server issued for that store
        scanned = zxingcpp.read_barcodes(Image.open(sample))
        assert scanned[0].text == by_name[sample.stem].qr_code
    assert thread_server.instance("store_0007").options == {"rejectCalls": True}


def test_bad_rows_are_reported_with_line_numbers(
    thread_server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = tmp_path / "mixed.csv"
    sheet.write_text(
        "instance_name,number,always_online,store_address\n"
        "ok_one,628111000001,yes,Jl. Sudirman\n"
        ",628111000002,,no name\n"
        "bad_number,62-81x-000,,\n"
        'ok_two,628111000004,,"multi\nline address"\n'
        "bad_flag,628111000005,maybe,\n"
    )
    code, out = run_cli(
        thread_server,
        "--json",
        "provision",
        str(sheet),
        "--out",
        str(tmp_path / "qr"),
        capsys=capsys,
    )
    assert code == 1
    rows = {r["line"]: r for r in json_lines(out) if "line" in r}
    assert rows[2]["status"] == "created"
    assert rows[3]["status"] == "failed"
    assert "instance_name is required" in str(rows[3]["error"])
    assert rows[4]["status"] == "failed"
    assert "digits" in str(rows[4]["error"])
    assert rows[6]["status"] == "created"  # the quoted newline makes it end on line 6
    assert rows[7]["status"] == "failed"
    assert "always_online" in str(rows[7]["error"])
    assert [p.name for p in pngs(tmp_path / "qr")] == ["ok_one.png", "ok_two.png"]


def test_faults_never_duplicate_and_a_rerun_finishes(
    thread_server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thread_server.chaos(
        0.25,
        [
            Fault.status(503),
            Fault.drop_after(),
            Fault.drop_before(),
            Fault.status(502),
            Fault.truncated(),
        ],
        seed=3,
        path="/instance/create",
    )
    sheet = write_csv(tmp_path / "stores.csv", stores(120))
    args = (
        "--json",
        "--timeout",
        "2",
        "provision",
        str(sheet),
        "--out",
        str(tmp_path / "qr"),
        "--concurrency",
        "12",
    )
    code, out = run_cli(thread_server, *args, capsys=capsys)
    summary = json_lines(out)[-1]["summary"]
    assert sum(summary.values()) == 120  # type: ignore[attr-defined]
    thread_server.clear_faults()
    code, out = run_cli(thread_server, *args, capsys=capsys)
    assert code == 0
    assert len(thread_server.instances) == 120
    assert all(thread_server.count_instances(f"store_{i:04d}") == 1 for i in range(120))
    assert len(pngs(tmp_path / "qr")) == 120


def provision_command(
    base_url: str, key: str, sheet: Path, out_dir: Path, *extra: str
) -> list[str]:
    """``wachat provision`` as a separate process runs it, against a sandbox elsewhere."""
    return [
        sys.executable,
        "-m",
        "wachat_async",
        "--api-key",
        key,
        "--base-url",
        base_url,
        "--json",
        "provision",
        str(sheet),
        "--out",
        str(out_dir),
        *extra,
    ]


def wait_for_pngs(folder: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(pngs(folder)) < count and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture
def sandbox() -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """``wachat sandbox`` in its own process, as another program would use it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "wachat_async", "--json", "sandbox"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    first = json.loads(process.stdout.readline())
    try:
        yield first["base_url"], first["api_key"], process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=10)
        process.stdout.close()


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates(
    sandbox: tuple[str, str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    base_url, key, _ = sandbox
    sheet = write_csv(tmp_path / "stores.csv", stores(1000))
    out_dir = tmp_path / "qr"
    command = provision_command(base_url, key, sheet, out_dir, "--concurrency", "16")
    first = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    wait_for_pngs(out_dir, 200)
    first.kill()  # no cleanup at all: SIGKILL mid-run
    first.wait()
    assert 0 < len(pngs(out_dir)) < 1000

    second = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
    )
    assert second.returncode == 0, second.stderr
    summary = json_lines(second.stdout)[-1]
    assert summary["total"] == 1000
    with Wachat(key, base_url=base_url) as wa:
        names = [i.instance_name for i in wa.instances.list()]
    assert len(names) == 1000
    assert len(set(names)) == 1000
    assert len(pngs(out_dir)) == 1000


def test_sandbox_prints_where_and_which_key_then_stops_on_ctrl_c(
    sandbox: tuple[str, str, subprocess.Popen[str]],
) -> None:
    base_url, key, process = sandbox
    assert base_url.startswith("http://127.0.0.1:")
    with Wachat(key, base_url=base_url) as wa:
        assert wa.instances.create("from_outside").instance.instance_name == "from_outside"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0


def test_instance_and_send_commands(
    thread_server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_cli(
        thread_server,
        "--json",
        "instances",
        "create",
        "cli_store",
        "--number",
        "628123456789",
        "--qr-png",
        str(tmp_path / "qr.png"),
        capsys=capsys,
    )
    assert code == 0
    created = json_lines(out)[0]
    name = str(created["api_instance_name"])
    assert (tmp_path / "qr.png").read_bytes() == thread_server.instance(name).qr_png
    code, out = run_cli(thread_server, "instances", "create", "shown", "--show-qr", capsys=capsys)
    assert "▀" in out or "▄" in out
    code, out = run_cli(thread_server, "--json", "instances", "state", name, capsys=capsys)
    assert json_lines(out)[0]["state"] == "connecting"
    code, out = run_cli(thread_server, "--json", "instances", "list", capsys=capsys)
    listed = json.loads(out)
    assert [i["instance_name"] for i in listed] == ["cli_store", "shown"]
    assert listed[0]["created_at"].endswith("+00:00")
    code, out = run_cli(thread_server, "--json", "instances", "qr", name, capsys=capsys)
    assert json_lines(out)[0]["code"] == thread_server.instance(name).qr_code
    code, _ = run_cli(thread_server, "send", "text", name, "628111222333", "hi", capsys=capsys)
    assert code == 1  # not connected yet: a typed error, one line on stderr
    thread_server.scan(name)
    code, out = run_cli(
        thread_server, "--json", "send", "text", name, "628111222333", "hi", capsys=capsys
    )
    assert code == 0
    assert thread_server.sent_messages(name)[0]["body"]["message"] == "hi"
    thread_server.logout(name)
    code, _ = run_cli(thread_server, "instances", "delete", name, capsys=capsys)
    assert code == 0
    assert name not in thread_server.instances


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    env_key = os.environ.pop("WACHAT_API_KEY", None)
    try:
        assert cli.main(["instances", "list"]) == 2
        assert "WACHAT_API_KEY" in capsys.readouterr().err
        assert (
            cli.main(
                [
                    "--api-key",
                    "k",
                    "provision",
                    str(tmp_path / "missing.csv"),
                    "--out",
                    str(tmp_path),
                ]
            )
            == 2
        )
        assert "no such CSV file" in capsys.readouterr().err
    finally:
        if env_key is not None:
            os.environ["WACHAT_API_KEY"] = env_key


def test_the_readme_main_job_runs_in_the_sandbox(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wachat_async",
            "--sandbox",
            "provision",
            str(ROOT / "examples" / "stores.csv"),
            "--out",
            str(tmp_path / "qr-codes"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "Provisioning summary" in done.stdout
    with (ROOT / "examples" / "stores.csv").open() as handle:
        expected = {row["instance_name"] + ".png" for row in csv.DictReader(handle)}
    assert {p.name for p in pngs(tmp_path / "qr-codes")} == expected
    assert io.BytesIO(next(iter(pngs(tmp_path / "qr-codes"))).read_bytes()).read(8) == PNG_SIGNATURE


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(
    sandbox: tuple[str, str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    base_url, key, _ = sandbox
    sheet = write_csv(tmp_path / "stores.csv", stores(400))
    out_dir = tmp_path / "qr"
    command = provision_command(
        base_url, key, sheet, out_dir, "--concurrency", "4", "--rate", "100"
    )
    first = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    wait_for_pngs(out_dir, 50)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == cli.EXIT_INTERRUPTED
    assert "re-run the same command to resume" in stderr
    assert "Traceback" not in stderr
    assert 0 < len(pngs(out_dir)) < 400

    second = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert second.returncode == 0, second.stderr
    assert json_lines(second.stdout)[-1]["summary"]["skipped"] > 0  # type: ignore[index]
    with Wachat(key, base_url=base_url) as wa:
        names = [i.instance_name for i in wa.instances.list()]
    assert sorted(n or "" for n in names) == [f"store_{i:04d}" for i in range(400)]
    assert len(pngs(out_dir)) == 400
