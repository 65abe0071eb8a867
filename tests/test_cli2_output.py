"""The wachat command's output at 80 and 200 columns on a terminal, and piped: a compact
instance table (a line per instance, API names whole, times to the second), prose wrapped
between words, one record per line when piped; a bare ``wachat``; ``--sandbox`` not offered
where a sandbox is the subject.

Run in this process: a terminal is what rich takes for one (``TTY_COMPATIBLE=1``, ``COLUMNS``).
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import KEY
from tests.test_cli_helpers import SGR, Done, main
from wachat_async import Wachat
from wachat_async.testing import FakeWachat, Fault

#: Friendly names as a newcomer's shops have them (their API names are 12 characters longer).
SHOPS = [f"toko_jakarta_selatan_{n:02d}" for n in range(1, 13)]
MICROSECONDS = re.compile(r"\d\d:\d\d:\d\d\.\d")


def server_args(server: FakeWachat) -> list[str]:
    return ["--api-key", KEY, "--base-url", server.base_url]


@pytest.fixture
def shops(thread_server: FakeWachat) -> list[str]:
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        names: list[str] = [
            wa.instances.create(s, number="628123456789").instance.api_instance_name for s in SHOPS
        ]
    thread_server.scan(names[0], profile_name="Toko Jakarta Selatan Satu")
    return names


def terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], columns: int, *args: str
) -> Done:
    """``wachat ARGS`` with stdout and stderr taken for a terminal ``columns`` wide; colours
    taken out."""
    with monkeypatch.context() as patch:
        patch.setenv("TTY_COMPATIBLE", "1")
        patch.setenv("COLUMNS", str(columns))
        patch.delenv("FORCE_COLOR", raising=False)
        done = main(capsys, *args)
    return Done(done.code, SGR.sub("", done.out), SGR.sub("", done.err))


def test_the_instance_table_at_80_columns_is_a_line_per_instance(
    thread_server: FakeWachat,
    shops: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    done = terminal(monkeypatch, capsys, 80, *server_args(thread_server), "instances", "list")
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert all(len(line) <= 80 for line in lines), done.out
    assert len(lines) == len(shops) + 2  # a title, a header, a line per instance
    assert not [line for line in lines if line.endswith(" ")]  # no padding after the end
    for api_name in shops:
        assert sum(api_name in line.split() for line in lines) == 1, done.out
    assert "│" not in done.out
    assert "┃" not in done.out
    assert "open" in lines[2 + shops.index(shops[0])] or any(
        shops[0] in line and "open" in line for line in lines
    )
    assert not MICROSECONDS.search(done.out)


def test_the_instance_table_at_200_columns_shows_every_column(
    thread_server: FakeWachat,
    shops: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    done = terminal(monkeypatch, capsys, 200, *server_args(thread_server), "instances", "list")
    assert done.code == 0, done.err
    title, header, *rows = done.out.splitlines()
    assert title == f"Instances ({len(shops)})"
    assert header.split() == [
        "api_instance_name",
        "instance_name",
        "state",
        "number",
        "profile_name",
        "created_at",
    ]
    assert len(rows) == len(shops)
    connected = next(row for row in rows if shops[0] in row)
    assert "Toko Jakarta Selatan Satu" in connected
    assert "628123456789" in connected
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", connected)
    assert not MICROSECONDS.search(done.out)


def test_piped_create_and_state_are_one_record_per_line(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str]
) -> None:
    created = main(capsys, *server_args(thread_server), "instances", "create", "toko_piped")
    assert created.code == 0, created.err
    (line,) = created.out.splitlines()
    fields = dict(field.split("=", 1) for field in line.split("\t"))
    api_name = fields["api_instance_name"]
    assert fields["instance_name"] == "toko_piped"
    assert api_name == thread_server.instance(api_name).api_name
    state = main(capsys, *server_args(thread_server), "instances", "state", api_name)
    assert state.code == 0, state.err
    (line,) = state.out.splitlines()
    assert dict(f.split("=", 1) for f in line.split("\t"))["state"] == "connecting"
    listed = main(capsys, *server_args(thread_server), "instances", "list")
    header, row = listed.out.splitlines()
    assert header.split("\t")[0] == "api_instance_name"
    assert row.split("\t")[0] == api_name


def test_create_on_a_terminal_ends_with_the_api_name(
    thread_server: FakeWachat, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*server_args(thread_server), "instances", "create", "toko_tty"]
    done = terminal(monkeypatch, capsys, 80, *args)
    assert done.code == 0, done.err
    last = done.out.rstrip().splitlines()[-1]
    assert last.startswith("Every later command takes the API name: t1_")
    assert all(len(line) <= 80 for line in done.out.splitlines())


def test_prose_wraps_between_words_at_80_columns(
    thread_server: FakeWachat,
    shops: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    thread_server.inject(
        Fault.status(404, message="Not Found"), path="/instance/logout", times=None
    )
    args = [*server_args(thread_server), "instances", "logout", shops[0]]
    wide = terminal(monkeypatch, capsys, 400, *args)
    narrow = terminal(monkeypatch, capsys, 80, *args)
    assert wide.code == narrow.code == 1
    assert any(len(line) > 80 for line in wide.err.splitlines())  # so there is wrapping to do
    lines = narrow.err.splitlines()
    assert all(len(line) <= 80 for line in lines), narrow.err
    words = [set(line.split()) for line in lines]
    for word in " ".join(wide.err.split()).split():
        assert any(word in shown for shown in words), word  # never cut in two


def test_a_bare_wachat_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    done = main(capsys)
    assert done.code == 0
    assert done.out.startswith("usage: wachat")
    for group in ("instances", "send", "provision", "sandbox"):
        assert group in done.out
    assert done.err == ""


def test_sandbox_is_not_offered_on_the_sandbox_command(capsys: pytest.CaptureFixture[str]) -> None:
    for words in (["sandbox"], ["sandbox", "scan"], ["sandbox", "deliveries"]):
        shown = main(capsys, *words, "--help")
        assert shown.code == 0, words
        assert "--sandbox" not in shown.out, words
    assert "--sandbox" in main(capsys, "instances", "list", "--help").out
    refused = main(capsys, "sandbox", "--sandbox")
    assert refused.code == 2
    assert "--sandbox" in refused.err


def test_piped_create_wait_is_a_record_then_the_connected_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeWachat.in_thread(api_keys={KEY}, auto_scan=0.2) as server:
        done = main(capsys, *server_args(server), "instances", "create", "toko_wait", "--wait")
    assert done.code == 0, done.err
    created, connected = (
        dict(f.split("=", 1) for f in line.split("\t")) for line in done.out.splitlines()
    )
    assert created["instance_name"] == "toko_wait"
    assert connected["api_instance_name"] == created["api_instance_name"]
    assert connected["state"] == "open"


@pytest.mark.parametrize(
    ("friendly", "one_line"),
    [
        ("cabang_jakarta_selatan_kebayoran_baru_blok_m", True),  # cut with an ellipsis
        ("jakarta_selatan_kebayoran_baru_blok_m_plaza_lantai_dua_x", False),  # beyond that
    ],
)
def test_long_names_at_80_columns_keep_the_api_name_whole(
    friendly: str,
    one_line: bool,
    thread_server: FakeWachat,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        api_names = [wa.instances.create(f"{friendly}{n}").instance.api_instance_name for n in "12"]
    done = terminal(monkeypatch, capsys, 80, *server_args(thread_server), "instances", "list")
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert all(len(line) <= 80 for line in lines), done.out
    for api_name in api_names:
        assert any(api_name in line.split() for line in lines), done.out
    if one_line:
        assert len(lines) == 2 + len(api_names)
        assert "…" in done.out  # the friendly names, cut
    else:  # a record each, of the columns that matter
        assert "created_at" not in done.out
        assert sum(line.startswith("state:") for line in lines) == len(api_names)
