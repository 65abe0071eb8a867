"""help(), pydoc, inspect and mypy see both clients' groups and every method's real signature."""

from __future__ import annotations

import inspect
import pydoc
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from wachat_async import AsyncWachat, Wachat
from wachat_async._help import public_methods

GROUPS = ("instances", "messages", "webhooks")
BASE = "http://127.0.0.1:9/api/v1"


def text_of(thing: object) -> str:
    """The page ``help(thing)`` shows, with signatures on one line: Python 3.13's pydoc puts a
    long signature one parameter per line."""
    page = pydoc.plain(pydoc.render_doc(thing))
    page = re.sub(r"\(\n[ |]*", "(", page)
    page = re.sub(r",\n[ |]*(?=[\w*/])", ", ", page)
    return re.sub(r"\n[ |]*\)", ")", page)


@pytest.fixture
def sync_client() -> Iterator[Wachat]:
    wa = Wachat("k", base_url=BASE)
    yield wa
    wa.close()


@pytest.mark.parametrize("client", [Wachat, AsyncWachat])
def test_help_of_a_client_lists_its_groups_and_their_methods(client: type) -> None:
    page = text_of(client)
    for group in GROUPS:
        assert f"``wa.{group}``" in page, group
        group_cls = getattr(client, group)
        assert f"{group} = <class '{group_cls.__module__}.{group_cls.__qualname__}'>" in page
        for name, method in public_methods(group_cls).items():
            parameters = list(inspect.signature(method).parameters.values())[1:]
            bare = [p.replace(annotation=inspect.Parameter.empty) for p in parameters]
            first = str(inspect.Signature(bare)).split(", ")[0]  # wrapped lines: the start
            assert f"    {name}{first}" in page, f"{group}.{name}"
    assert "request(self, method: " in page
    assert "_Bridged" not in page
    assert " object at 0x" not in page


@pytest.mark.parametrize("client", [Wachat, AsyncWachat])
def test_help_of_a_group_shows_each_method_with_its_signature_and_doc(client: type) -> None:
    for group in GROUPS:
        group_cls = getattr(client, group)
        assert isinstance(group_cls, type)
        page = text_of(group_cls)
        for name, method in public_methods(group_cls).items():
            signature = inspect.signature(method)
            assert next(iter(signature.parameters)) == "self"
            assert f"{name}(self, " in page or f"{name}(self)" in page, f"{group}.{name}"
            summary = inspect.getdoc(method).split("\n")[0]  # type: ignore[union-attr]
            assert summary in page, f"{group}.{name}"
        assert "_Bridged" not in page
        assert " object at 0x" not in page


def test_help_of_a_sync_group_on_a_client(sync_client: Wachat) -> None:
    page = text_of(sync_client.messages)
    assert "send_text(self, name: str, number: str, message: str, *, delay:" in page
    assert "_Bridged" not in page


def test_sync_signatures_are_the_async_ones(sync_client: Wachat) -> None:
    async_client = AsyncWachat("k", base_url=BASE)
    for group in GROUPS:
        blocking_group = getattr(sync_client, group)
        async_group = getattr(async_client, group)
        for name in public_methods(type(async_group)):
            blocking = inspect.signature(getattr(blocking_group, name))
            original = inspect.signature(getattr(async_group, name), eval_str=True)
            assert blocking.parameters == original.parameters, f"{group}.{name}"
    assert (
        inspect.signature(sync_client.request).parameters
        == inspect.signature(async_client.request, eval_str=True).parameters
    )


def test_no_sync_docstring_says_await() -> None:
    owners: list[type] = [Wachat, *(getattr(Wachat, group) for group in GROUPS)]
    docs = {f"{owner.__name__}": inspect.getdoc(owner) or "" for owner in owners}
    for owner in owners:
        for name, method in public_methods(owner).items():
            docs[f"{owner.__name__}.{name}"] = inspect.getdoc(method) or ""
    assert "await" in (inspect.getdoc(AsyncWachat.request) or "")  # the rewrite has work to do
    async_words = ("await ", "async with", "async for")
    assert [where for where, doc in docs.items() if any(w in doc for w in async_words)] == []
    assert 'wa.request("DELETE", "/instance/logout"' in docs["Wachat.request"]


def test_mypy_sees_the_blocking_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mypy_api = pytest.importorskip("mypy.api")
    program = tmp_path / "uses_wachat.py"
    program.write_text(
        textwrap.dedent("""
            from wachat_async import SendResult, Wachat

            wa = Wachat("k")
            sent: SendResult = wa.messages.send_text("t1_x", "628123456789", "hi", delay=10)
            states = [r.ok for r in wa.instances.create_many([], concurrency=2)]
            url: str = wa.instances.qr_image_url("t1_x")
            answer = wa.request("GET", "/instance/list")
            wa.messages.send_text("t1_x", 628123456789, "hi")  # line 9: a number, not a str
            wa.messages.send_text("t1_x", "628", "hi", delay="soon")  # line 10
            wa.instances.state("t1_x").nope  # line 11: no such field
            late: int = wa.instances.state("t1_x")  # line 12: not an int
        """)
    )
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("MYPYPATH", str(root))  # this tree's package, not an installed one
    out, _, status = mypy_api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), str(program)]
    )
    lines = sorted({int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line})
    assert lines == [9, 10, 11, 12], out
    assert status == 1
