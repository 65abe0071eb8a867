"""The wachat command: global options, output on a terminal, through a pipe and as JSON, text
from users and servers shown literally, errors and exit statuses, the instance and send
commands, and Ctrl-C while waiting for a scan.

Provisioning is in ``test_cli_provision.py``, the sandbox in ``test_cli_sandbox.py``.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import KEY
from tests.test_cli_helpers import (
    SGR,
    env,
    main,
    on_terminal,
    spawn,
    wachat,
)
from wachat_async import Wachat, __version__, cli
from wachat_async.cli.output import dumps, literal
from wachat_async.testing import FakeWachat, Fault

#: Friendly names that markup, control characters and a terminal would each mangle.
TRICKY = ["[bold]x[/]", "x\x1b[2Jy", "[link=http://evil]a[/link]", "tab\there", ":smile:"]
#: Long enough that a table at 80 columns cannot show it beside anything else.
LONG = "jakarta_selatan_kebayoran_baru_blok_m_plaza_lantai_dua"


def server_args(server: FakeWachat) -> list[str]:
    return ["--api-key", KEY, "--base-url", server.base_url]


def server_env(server: FakeWachat) -> dict[str, str]:
    return env(WACHAT_API_KEY=KEY, WACHAT_BASE_URL=server.base_url)


# -- the command line -----------------------------------------------------------------------


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    done = main(capsys, "--version")
    assert (done.code, done.out.strip()) == (0, f"wachat-async {__version__}")
    done = main(capsys, "--help")
    assert done.code == 0
    for group in ("instances", "send", "provision", "sandbox"):
        assert group in done.out


def test_global_options_work_before_and_after_the_command(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(capsys, *server_args(thread_server), "instances", "create", "one").code == 0
    before = main(capsys, "--json", *server_args(thread_server), "instances", "list")
    after = main(capsys, "instances", "list", "--json", *server_args(thread_server))
    middle = main(capsys, "instances", "--json", "list", *server_args(thread_server))
    assert before.code == after.code == middle.code == 0
    assert before.json() == after.json() == middle.json()
    assert [i["instance_name"] for i in after.json()] == ["one"]
    timeout = main(capsys, "instances", "list", *server_args(thread_server), "--timeout", "0")
    assert timeout.code == 2
    assert "timeout" in timeout.err


def test_usage_errors_exit_2_in_words_or_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WACHAT_API_KEY", raising=False)
    done = main(capsys, "instances", "list")
    assert done.code == 2
    assert done.err.count("\n") == 1
    assert "--api-key" in done.err
    assert "WACHAT_API_KEY" in done.err
    done = main(capsys, "instances", "frobnicate")
    assert done.code == 2
    assert "invalid choice" in done.err
    assert "usage: wachat instances" in done.err
    done = main(capsys, "instances", "frobnicate", "--json")
    assert done.code == 2
    assert done.error()["type"] == "UsageError"
    assert "invalid choice" in done.error()["message"]


def test_api_errors_in_one_line_or_as_json(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str]
) -> None:
    send = ["send", "text", "t1_nope_store", "628111222333", "hi"]
    done = main(capsys, *server_args(thread_server), *send)
    assert done.code == 1
    assert done.out == ""
    assert done.err.startswith("error: NotFoundError: 404 ")
    assert done.err.count("\n") == 1
    assert "`wachat instances list` shows both" in done.err  # the hint, for the command line
    done = main(capsys, *server_args(thread_server), "--json", *send)
    assert done.code == 1
    error = done.error()
    assert error["type"] == "NotFoundError"
    assert error["status_code"] == 404
    assert "not found" in error["message"]
    assert "takes the API name it printed" in error["hint"]
    assert KEY not in done.err


# -- text from users and servers is shown literally -----------------------------------------


def test_literal_makes_control_characters_visible() -> None:
    assert literal("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert literal("tab\tnew\nline\r") == "tab\\tnew\\nline\\r"
    assert literal("\x9b31m\x7f") == "\\x9b31m\\x7f"  # C1 CSI and DEL
    assert literal("evil\u202etxt.exe\u2028") == "evil\\u202etxt.exe\\u2028"
    assert literal("\udcff") == "\\udcff"  # a byte of an undecodable command line
    assert literal("[bold]café 🎉 \u200d[/]") == "[bold]café 🎉 \u200d[/]"
    text = dumps({"name": "a\x1b\x9b\u202e\u2028\x7fz", "plain": "café"})
    assert not any(c in text for c in "\x1b\x9b\u202e\u2028\x7f")
    assert json.loads(text) == {"name": "a\x1b\x9b\u202e\u2028\x7fz", "plain": "café"}
    assert "café" in text  # ensure_ascii stays off


@pytest.mark.parametrize("name", TRICKY)
def test_names_print_as_themselves_in_every_form(
    name: str,
    thread_server: FakeWachat,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done = main(capsys, *server_args(thread_server), "instances", "create", name)
    assert done.code == 0, done.err
    fields = done.out.rstrip("\n").split("\t")  # piped: one line of key=value fields
    assert f"instance_name={literal(name)}" in fields
    api_name = next(i.api_name for i in thread_server.instances.values() if i.display_name == name)
    assert f"api_instance_name={literal(api_name)}" in fields
    assert "\x1b" not in done.out

    done = main(capsys, *server_args(thread_server), "--json", "instances", "list")
    assert "\x1b" not in done.out
    assert name in [i["instance_name"] for i in done.json()]

    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich sees a terminal
    monkeypatch.setenv("COLUMNS", "120")
    done = main(capsys, *server_args(thread_server), "instances", "list")
    assert done.code == 0
    shown = SGR.sub("", done.out)
    assert "\x1b" not in shown
    assert literal(api_name) in shown
    assert "🎉" not in shown or name != ":smile:"  # no emoji codes either


def test_a_server_message_with_markup_and_escapes_prints_literally(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = "[bold]x\x1b[2J"
    for extra in ([], ["--json"]):
        thread_server.inject(Fault.status(400, message=evil), path="/instance/list")
        done = main(capsys, *server_args(thread_server), *extra, "instances", "list")
        assert done.code == 1
        assert "\x1b" not in done.err
        if extra:
            assert done.error()["message"] == evil
        else:
            assert "[bold]x\\x1b[2J" in done.err
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    thread_server.inject(Fault.status(400, message=evil), path="/instance/list")
    done = main(capsys, *server_args(thread_server), "instances", "list")
    assert done.code == 1
    assert "[bold]x\\x1b[2J" in SGR.sub("", done.err)
    assert "\x1b[2J" not in done.err


# -- tables: API names whole at any width ---------------------------------------------------


@pytest.fixture
def long_names(thread_server: FakeWachat) -> list[str]:
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        return sorted(wa.instances.create(f"{LONG}_{s}").instance.api_instance_name for s in "ab")


@pytest.mark.parametrize("columns", [80, 200])
def test_tables_never_cut_an_api_name_on_a_terminal(
    columns: int, thread_server: FakeWachat, long_names: list[str]
) -> None:
    done = on_terminal("instances", "list", columns=columns, environ=server_env(thread_server))
    assert done.code == 0, done.out
    lines = done.out.splitlines()
    for api_name in long_names:
        assert any(api_name in line for line in lines), done.out
    if columns == 200:
        assert lines[1].split()[:2] == ["api_instance_name", "instance_name"]  # a table
        assert all(len(line) <= columns for line in lines)


def test_piped_output_is_one_record_per_line(
    thread_server: FakeWachat, long_names: list[str]
) -> None:
    done = wachat("instances", "list", environ=server_env(thread_server) | {"COLUMNS": "40"})
    assert done.code == 0
    header, *rows = done.out.splitlines()
    assert header.split("\t")[:3] == ["api_instance_name", "instance_name", "state"]
    assert sorted(row.split("\t")[0] for row in rows) == long_names
    assert not set(done.out) & set("┃│━─┏└")
    assert "\x1b" not in done.out


# -- instances and send ---------------------------------------------------------------------


def test_create_shows_the_api_name_qr_and_pairing_code(
    thread_server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "qr.png"
    done = main(
        capsys, *server_args(thread_server), "--json", "instances", "create", "cli_store",
        "--number", "628123456789", "--qr-png", str(png),
    )  # fmt: skip
    assert done.code == 0, done.err
    created = done.json()
    name = created["api_instance_name"]
    served = thread_server.instance(name)
    assert created["qrcode"]["code"] == served.qr_code
    assert created["qrcode"]["pairing_code"]
    assert created["qrcode"]["base64"] == served.qr_data_uri
    assert created["qr_png"] == str(png)
    assert png.read_bytes() == served.qr_png

    piped = main(capsys, *server_args(thread_server), "instances", "create", "piped")
    assert "▀" not in piped.out  # not a terminal: no QR drawn unless asked
    assert "\tpairing_code=" in piped.out
    shown = main(capsys, *server_args(thread_server), "instances", "create", "shown", "--show-qr")
    assert "▀" in shown.out or "▄" in shown.out
    as_json = main(
        capsys, *server_args(thread_server), "--json", "instances", "create", "j", "--show-qr"
    )
    assert as_json.json()["instance_name"] == "j"  # stdout stays one JSON document
    assert "▀" in as_json.err or "▄" in as_json.err


def test_create_on_a_terminal_draws_the_qr(thread_server: FakeWachat) -> None:
    done = on_terminal("instances", "create", LONG, columns=80, environ=server_env(thread_server))
    assert done.code == 0, done.out
    api_name = thread_server.instance(LONG).api_name
    assert f"Created {api_name}" in done.out
    assert "▀" in done.out or "▄" in done.out
    assert thread_server.instance(LONG).qr_code is not None


def test_instance_and_send_commands(
    thread_server: FakeWachat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = server_args(thread_server)
    created = main(capsys, *base, "--json", "instances", "create", "shop", "--no-reject-calls")
    name = created.json()["api_instance_name"]
    assert thread_server.instance(name).options == {"rejectCalls": False}
    assert main(capsys, *base, "--json", "instances", "state", name).json()["state"] == "connecting"
    qr = main(capsys, *base, "--json", "instances", "qr", name, "--png", str(tmp_path / "q.png"))
    assert qr.json()["qrcode"]["code"] == thread_server.instance(name).qr_code
    assert (tmp_path / "q.png").read_bytes() == thread_server.instance(name).qr_png
    drawn = main(capsys, *base, "instances", "qr", name, "--show")
    assert "▀" in drawn.out or "▄" in drawn.out
    listed = main(capsys, *base, "--json", "instances", "list").json()
    assert [i["api_instance_name"] for i in listed] == [name]
    assert listed[0]["created_at"].endswith("+00:00")

    refused = main(capsys, *base, "send", "text", name, "628111222333", "hi")
    assert refused.code == 1  # not connected yet
    assert refused.err.startswith("error: BadRequestError: 400 ")
    thread_server.scan(name)
    sent = main(capsys, *base, "send", "text", name, "628111222333", "hi")
    assert sent.code == 0
    message_id = thread_server.sent_messages(name)[0]["id"]
    assert f"message_id={message_id}\t" in sent.out
    sent = main(capsys, *base, "--json", "send", "text", name, "628111222333", "again")
    assert sent.json()["message_id"] == thread_server.sent_messages(name)[1]["id"]

    connected = main(capsys, *base, "instances", "delete", name)
    assert connected.code == 1
    assert "cannot be deleted" in connected.err
    assert f"instances logout {name}" in connected.err
    thread_server.logout(name)
    done = main(capsys, *base, "--json", "instances", "delete", name)
    assert (done.code, done.json()) == (0, {"deleted": name})
    assert name not in thread_server.instances


def test_create_wait_follows_new_qr_codes_until_the_scan(thread_server: FakeWachat) -> None:
    process = spawn(
        "--json", "instances", "create", "waiting", "--wait", environ=server_env(thread_server)
    )
    assert process.stdout is not None
    created = json.loads(process.stdout.readline())
    name = created["api_instance_name"]
    thread_server.rotate_qr(name)
    rotated = json.loads(process.stdout.readline())
    assert rotated["event"] == "qrcode"
    assert rotated["qrcode"]["code"] == thread_server.instance(name).qr_code
    thread_server.scan(name)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["state"]["state"] == "open"


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_while_waiting_says_the_instance_exists_and_how_to_go_on(
    as_json: bool, thread_server: FakeWachat
) -> None:
    json_flag = ["--json"] if as_json else []
    process = spawn(
        *json_flag, "instances", "create", "it's [x]", "--wait", environ=server_env(thread_server)
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # the API name is out: the create is done
    api_name = thread_server.instance("it's [x]").api_name
    assert api_name in (json.loads(first)["api_instance_name"] if as_json else first)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == cli.EXIT_INTERRUPTED
    assert "Traceback" not in err
    if as_json:
        error = json.loads(err)["error"]
        assert error["type"] == "Interrupted"
        text = error["message"] + "\n".join(error["next"])
    else:
        text = err
    assert f"The instance exists: {api_name}" in text
    assert "wachat instances qr 't1_" in text
    assert "wachat instances state 't1_" in text
    assert "second instance" in text
    assert "re-run" not in text
    assert len(thread_server.instances) == 1
