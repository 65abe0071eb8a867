"""The wachat command undoes what it made: ``instances logout``, ``instances delete
--logout``, a second delete saying the instance is already gone; friendly names looked up
(used when one instance has them, the candidates listed when several do, also by the sandbox
verbs); and the library's hints said for the command line.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import KEY
from tests.test_cli_helpers import main
from wachat_async import Wachat, _status
from wachat_async.cli.common import LOGOUT_PATH, cli_hint
from wachat_async.errors import APIError, ConflictError
from wachat_async.testing import FakeWachat, Fault

#: What a command line hint must never say: Python.
PYTHON = ("created.instance", "instances.list()", "allow_insecure_http", "AsyncWachat", "()")


def server_args(server: FakeWachat) -> list[str]:
    return ["--api-key", KEY, "--base-url", server.base_url]


def created(server: FakeWachat, friendly: str, *, scanned: bool = False) -> str:
    with Wachat(KEY, base_url=server.base_url) as wa:
        api_name = wa.instances.create(friendly).instance.api_instance_name
    if scanned:
        server.scan(api_name)
    return api_name


def speaks_cli(text: str) -> bool:
    return not any(python in text for python in PYTHON)


def test_a_connected_instance_is_logged_out_then_deleted_then_already_gone(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str]
) -> None:
    name = created(thread_server, "toko_satu", scanned=True)  # as --auto-scan leaves it
    base = server_args(thread_server)
    refused = main(capsys, *base, "instances", "delete", name)
    assert refused.code == 1
    assert f"instances logout {name}" in refused.err
    assert f"instances delete --logout {name}" in refused.err
    assert speaks_cli(refused.err), refused.err
    assert KEY not in refused.err  # the commands to type name the server, never the key
    assert name in thread_server.instances

    logged_out = main(capsys, *base, "instances", "logout", name)
    assert logged_out.code == 0, logged_out.err
    assert thread_server.instance(name).state == "close"
    assert main(capsys, *base, "instances", "delete", name).code == 0
    assert name not in thread_server.instances

    again = main(capsys, *base, "instances", "delete", name)
    assert again.code == 1
    assert f"{name} is already gone" in again.err
    assert "friendly name of" not in again.err, again.err
    assert speaks_cli(again.err), again.err
    as_json = main(capsys, *base, "--json", "instances", "delete", name)
    assert as_json.error()["type"] == "NotFoundError"


def test_delete_logout_does_both_and_only_logs_out_what_is_connected(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str]
) -> None:
    base = server_args(thread_server)
    connected = created(thread_server, "toko_dua", scanned=True)
    waiting = created(thread_server, "toko_tiga")
    for name in (connected, waiting):
        done = main(capsys, *base, "--json", "instances", "delete", "--logout", name)
        assert (done.code, done.json()) == (0, {"deleted": name}), done.err
        assert name not in thread_server.instances
    logouts = [r for r in thread_server.requests if r.path == LOGOUT_PATH]
    assert [r.query.get("instanceName") for r in logouts] == [connected]


def test_a_server_without_the_logout_path_says_how_else(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str]
) -> None:
    name = created(thread_server, "toko_empat", scanned=True)
    thread_server.inject(Fault.status(404, message="Not Found"), path=LOGOUT_PATH, times=None)
    for words in (["logout", name], ["delete", "--logout", name]):
        done = main(capsys, *server_args(thread_server), "instances", *words)
        assert done.code == 1, words
        assert f"no logout at DELETE {LOGOUT_PATH}" in done.err
        assert "Linked devices" in done.err
        assert f"wachat sandbox disconnect {name}" in done.err
        assert speaks_cli(done.err), done.err
        assert thread_server.instance(name).state == "open"  # still there, still connected


def test_a_friendly_name_is_used_when_one_instance_has_it(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str]
) -> None:
    name = created(thread_server, "toko_lima")
    done = main(capsys, *server_args(thread_server), "instances", "state", "toko_lima")
    assert done.code == 0, done.err
    assert f"api_instance_name={name}\t" in done.out
    deleted = main(
        capsys, *server_args(thread_server), "--json", "instances", "delete", "toko_lima"
    )
    assert deleted.json() == {"deleted": name}


def test_a_shared_friendly_name_lists_the_candidates_and_touches_none(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str]
) -> None:
    first = created(thread_server, "jakarta_store", scanned=True)
    second = created(thread_server, "jakarta_store")
    for words in (["instances", "delete", "--logout"], ["instances", "state"]):
        done = main(capsys, *server_args(thread_server), *words, "jakarta_store")
        assert done.code == 2, words
        assert "2 instances have the friendly name jakarta_store" in done.err
        lines = done.err.splitlines()
        assert any(first in line and "open" in line and "created 20" in line for line in lines)
        assert any(second in line and "connecting" in line for line in lines)
    assert {first, second} <= set(thread_server.instances)
    assert thread_server.instance(first).state == "open"
    as_json = main(
        capsys, *server_args(thread_server), "--json", "instances", "state", "jakarta_store"
    )
    assert as_json.code == 2
    assert sorted(line.split()[0] for line in as_json.error()["next"]) == sorted([first, second])


def test_the_sandbox_verbs_list_the_candidates_too(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str]
) -> None:
    first = created(thread_server, "jakarta_store")
    second = created(thread_server, "jakarta_store")
    done = main(capsys, *server_args(thread_server), "sandbox", "scan", "jakarta_store")
    assert done.code == 2
    assert "2 instances have the friendly name jakarta_store" in done.err
    assert first in done.err
    assert second in done.err
    assert thread_server.instance(first).state == thread_server.instance(second).state
    assert thread_server.instance(first).state == "connecting"
    unknown = main(capsys, *server_args(thread_server), "sandbox", "scan", "t1_nope")
    assert unknown.code == 1
    assert "No single instance" in unknown.err


def test_plain_http_beyond_loopback_is_refused_in_the_command_lines_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    done = main(
        capsys, "--api-key", KEY, "--base-url", "http://example.com/api/v1", "instances", "list"
    )
    assert done.code == 2
    assert "https:// --base-url" in done.err, done.err
    assert speaks_cli(done.err), done.err
    assert KEY not in done.err


def test_a_throttled_call_says_when_to_run_it_again(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str]
) -> None:
    thread_server.inject(Fault.status(429, retry_after=3600), path="/instance/list", times=None)
    done = main(capsys, *server_args(thread_server), "instances", "list")
    assert done.code == 1
    assert "asked to wait 3600 s" in done.err
    assert "run it again" in done.err
    assert speaks_cli(done.err), done.err
    assert "max_retry_after" not in done.err, done.err


def api_error(hint: str | None, code: str | None = None) -> APIError:
    error = ConflictError(409, "still connected", hint=hint, retry_after=5)
    if code is not None:
        error.hint_code = code
    return error


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("logout_first", "wachat instances logout"),
        ("retry_after", "asked to wait 5 s"),
        ("retry_after_too_long", "run it again"),
        ("sandbox_key", "WACHAT_API_KEY"),
        ("api_instance_name", "instances list"),
        ("not_wachat", "--base-url"),
    ],
)
def test_each_library_hint_code_is_said_for_the_command_line(code: str, says: str) -> None:
    shown = cli_hint(api_error("the library's words, for Python", code))
    assert shown is not None
    assert says in shown
    assert speaks_cli(shown)


def test_every_hint_code_the_library_documents_is_in_the_table() -> None:
    documented = set(re.findall(r"^- ``(\w+)``:", _status.__doc__ or "", re.M))
    assert documented  # the list is where the test reads it
    for code in documented:
        assert cli_hint(api_error("x", code)) != "x", code


def test_a_hint_the_table_does_not_know_is_the_librarys() -> None:
    assert cli_hint(api_error("Something new", "a_new_code")) == "Something new"
    assert cli_hint(api_error("Something new")) == "Something new"
    assert cli_hint(api_error(None)) is None
