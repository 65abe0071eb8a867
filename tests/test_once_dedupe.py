"""Duplicates heal themselves: ``instances.dedupe`` lists every friendly name held twice and
keeps the right one (the journal's, else a connected one, else the oldest); with
``delete=True`` it deletes the unconnected extras and never a connected one; ``create_many``
ends with the same sweep over the names it created, leaving what the account held before.

Duplicates are made the way the API makes them: two creates of one friendly name (a late
first attempt is one more create of that name while the run goes on)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from tests.conftest import KEY
from tests.test_cli_helpers import main
from wachat_async import (
    AsyncWachat,
    CreateSpec,
    DuplicateGroup,
    JournalError,
    ProvisionProgress,
    Wachat,
)
from wachat_async.testing import FakeWachat


async def create(wa: AsyncWachat, server: FakeWachat, name: str, *, scan: bool = False) -> str:
    api = (await wa.instances.create(name)).instance.api_instance_name
    if scan:
        server.scan(api)
    return api


def names_on(server: FakeWachat, friendly: str) -> set[str]:
    return {api for api, inst in server.instances.items() if inst.display_name == friendly}


async def test_dedupe_lists_every_name_held_twice_and_keeps_a_connected_one_else_the_oldest(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    older, connected, newer = [await create(wa, server, "shop", scan=i == 1) for i in range(3)]
    first, second = await create(wa, server, "cafe"), await create(wa, server, "cafe")
    await create(wa, server, "alone")
    groups = await wa.instances.dedupe()
    assert [g.instance_name for g in groups] == ["cafe", "shop"]
    cafe, shop = groups
    assert cafe.keep.api_instance_name == first
    assert [e.api_instance_name for e in cafe.extras] == [second]
    assert shop.keep.api_instance_name == connected
    assert [e.api_instance_name for e in shop.extras] == [older, newer]
    assert (cafe.deleted, shop.deleted) == ((), ())
    assert not shop.resolved
    assert names_on(server, "shop") == {older, connected, newer}  # nothing deleted
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        shop.deleted = ()  # type: ignore[misc]


async def test_delete_removes_the_unconnected_extras_and_never_a_connected_one(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    kept = await create(wa, server, "shop", scan=True)
    paired = await create(wa, server, "shop", scan=True)
    spare = await create(wa, server, "shop")
    (group,) = await wa.instances.dedupe(delete=True)
    assert group.keep.api_instance_name == kept
    assert group.deleted == (spare,)
    assert [e.api_instance_name for e in group.left] == [paired]
    assert names_on(server, "shop") == {kept, paired}
    # Asked again: the connected extra is still reported, still not deleted.
    (again,) = await wa.instances.dedupe(delete=True)
    assert (again.deleted, [e.api_instance_name for e in again.left]) == ((), [paired])


async def test_the_instance_a_journal_recorded_is_kept_over_a_connected_older_one(
    wa: AsyncWachat, server: FakeWachat, tmp_path: Path
) -> None:
    before = await create(wa, server, "shop", scan=True)
    journal = tmp_path / "journal.sqlite"
    (result,) = [r async for r in wa.instances.create_many([CreateSpec("shop")], journal=journal)]
    recorded = result.api_instance_name
    assert names_on(server, "shop") == {before, recorded}  # the run's sweep left `before` alone
    without = await wa.instances.dedupe()
    assert without[0].keep.api_instance_name == before  # connected wins without the journal
    (group,) = await wa.instances.dedupe(delete=True, journal=journal)
    assert group.keep.api_instance_name == recorded
    assert group.deleted == ()
    assert [e.api_instance_name for e in group.left] == [before]  # connected: never deleted


async def test_a_journal_that_does_not_exist_is_an_error_not_a_new_file(
    wa: AsyncWachat, server: FakeWachat, tmp_path: Path
) -> None:
    missing = tmp_path / "typo.sqlite"
    with pytest.raises(JournalError, match="no journal at"):
        await wa.instances.dedupe(journal=missing)
    assert not missing.exists()


async def test_create_many_ends_with_a_sweep_over_the_names_it_created(
    wa: AsyncWachat, server: FakeWachat
) -> None:
    earlier = await create(wa, server, "a")  # the account had it before the run: not touched
    late: list[str] = []

    async def specs() -> AsyncIterator[CreateSpec]:
        yield CreateSpec("a")
        # The first attempt of a resent create landing late: another "a", and another "b"
        # that a phone scans at once.
        late.append(await create(wa, server, "a"))
        yield CreateSpec("b")
        late.append(await create(wa, server, "b", scan=True))
        yield CreateSpec("c")

    seen: list[ProvisionProgress] = []
    results = [
        r async for r in wa.instances.create_many(specs(), concurrency=1, on_progress=seen.append)
    ]
    made = {r.instance_name: r.api_instance_name for r in results}
    assert names_on(server, "a") == {earlier, made["a"]}  # the late one deleted
    assert names_on(server, "b") == {made["b"], late[1]}  # connected: left
    assert len(names_on(server, "c")) == 1
    groups = {g.instance_name: g for g in seen[-1].duplicates}
    assert set(groups) == {"a", "b"}
    assert groups["a"].deleted == (late[0],)
    assert groups["a"].keep.api_instance_name == made["a"]
    assert [e.api_instance_name for e in groups["b"].left] == [late[1]]
    assert all(not p.duplicates for p in seen[:-1])


async def test_a_run_without_duplicates_reports_none(wa: AsyncWachat, server: FakeWachat) -> None:
    seen: list[ProvisionProgress] = []
    specs = [CreateSpec("x"), CreateSpec("y")]
    assert len([r async for r in wa.instances.create_many(specs, on_progress=seen.append)]) == 2
    assert all(p.duplicates == () for p in seen)
    assert await wa.instances.dedupe() == []


def test_the_blocking_client_dedupes_too(thread_server: FakeWachat) -> None:
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        first = wa.instances.create("shop").instance.api_instance_name
        second = wa.instances.create("shop").instance.api_instance_name
        groups = wa.instances.dedupe(delete=True)
    assert groups == [DuplicateGroup("shop", groups[0].keep, groups[0].extras, (second,))]
    assert groups[0].keep.api_instance_name == first
    assert set(thread_server.instances) == {first}


def test_the_cli_lists_one_line_per_name_and_exits_1_while_duplicates_remain(
    thread_server: FakeWachat, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACHAT_API_KEY", KEY)
    monkeypatch.setenv("WACHAT_BASE_URL", thread_server.base_url)
    long_name = "jakarta_selatan_kebayoran_baru_blok_m_plaza_lantai_dua"
    with Wachat(KEY, base_url=thread_server.base_url) as wa:
        apis = [wa.instances.create(long_name).instance.api_instance_name for _ in range(2)]
        paired = [wa.instances.create("shop").instance.api_instance_name for _ in range(2)]
    for api in paired:
        thread_server.scan(api)
    listed = main(capsys, "instances", "dedupe")
    assert listed.code == 1
    lines = listed.out.splitlines()
    assert lines[0] == f"{long_name}: keep {apis[0]}; extra {apis[1]}"  # never cut, piped
    assert lines[1] == f"shop: keep {paired[0]} (connected); extra {paired[1]} (connected)"
    assert "add --delete" in lines[2]
    assert len(thread_server.instances) == 4

    deleted = main(capsys, "--json", "instances", "dedupe", "--delete")
    assert deleted.code == 1  # the connected extra remains
    documents = [json.loads(line) for line in deleted.out.splitlines()]
    assert documents[0]["deleted"] == [apis[1]]
    assert documents[1]["left"] == [paired[1]]
    assert documents[-1] == {"summary": {"names": 2, "deleted": 1, "left": 1}}

    thread_server.logout(paired[1])
    cleaned = main(capsys, "instances", "dedupe", "--delete")
    assert cleaned.code == 0
    assert f"deleted {paired[1]}" in cleaned.out
    assert main(capsys, "instances", "dedupe").code == 0
