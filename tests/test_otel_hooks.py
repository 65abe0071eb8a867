"""Hooks: every attempt, retry decision and reconciliation step, seen by plain and async
callables, per client and through with_options; a hook that raises fails the call as a
HookError, and nothing is resent for it."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest

from tests.conftest import FAST_RETRY, KEY
from wachat_async import (
    AsyncWachat,
    HookError,
    Hooks,
    InvalidRequestError,
    ReconcileEvent,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    Wachat,
)
from wachat_async.testing import FakeWachat, Fault


class Seen:
    """Records every event, from a plain and an async callable each."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def plain(self, event: Any) -> None:
        self.events.append(("plain", event))

    async def later(self, event: Any) -> None:
        await asyncio.sleep(0)
        self.events.append(("async", event))

    def hooks(self) -> Hooks:
        both = [self.plain, self.later]
        return Hooks(on_request=both, on_response=both, on_retry=both, on_reconcile=both)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for how, e in self.events if isinstance(e, kind) and how == "plain"]


def client(server: FakeWachat, **options: Any) -> AsyncWachat:
    return AsyncWachat(
        KEY, base_url=server.base_url, retry_policy=FAST_RETRY, settle_delay=0.1, **options
    )


async def test_hooks_see_each_attempt_and_the_retry_between_them(server: FakeWachat) -> None:
    seen = Seen()
    server.inject(Fault.status(503), path="/instance/create")
    async with client(server, hooks=seen.hooks()) as wa:
        await wa.instances.create("hooked_shop")
    kinds = [(how, type(e).__name__, getattr(e, "attempt", None)) for how, e in seen.events]
    assert kinds == [
        ("plain", "RequestEvent", 1),
        ("async", "RequestEvent", 1),
        ("plain", "ResponseEvent", 1),
        ("async", "ResponseEvent", 1),
        ("plain", "RetryEvent", 1),
        ("async", "RetryEvent", 1),
        ("plain", "RequestEvent", 2),
        ("async", "RequestEvent", 2),
        ("plain", "ResponseEvent", 2),
        ("async", "ResponseEvent", 2),
    ]
    request = seen.of(RequestEvent)[0]
    assert request.operation == "instances.create"
    assert (request.method, request.url_template) == ("POST", "/instance/create")
    assert request.url == f"{server.base_url}/instance/create"
    assert request.headers["Authorization"] == "Bearer ***"
    assert request.headers["Content-Type"] == "application/json"
    first, second = seen.of(ResponseEvent)
    assert (first.status, second.status) == (503, 201)
    assert first.elapsed >= 0
    assert first.error is None
    (retry,) = seen.of(RetryEvent)
    assert (retry.operation, retry.attempt, retry.failure) == ("instances.create", 1, "throttled")
    assert retry.error == "ServerError"
    assert retry.wait >= 0


async def test_a_network_failure_is_a_response_without_status(server: FakeWachat) -> None:
    seen = Seen()
    # Two dropped connections: aiohttp 3.10 resends a GET once by itself, on a new connection,
    # so there one attempt meets both drops; later versions make two attempts of it.
    server.inject(Fault.drop_before(), path="/instance/state", times=2)
    created_name = None
    async with client(server, hooks=seen.hooks()) as wa:
        created_name = (await wa.instances.create("hooked_state")).instance.api_instance_name
        seen.events.clear()
        await wa.instances.state(created_name)
    *failed, answered = seen.of(ResponseEvent)
    assert failed
    assert all((event.status, event.error) == (None, "APIConnectionError") for event in failed)
    assert answered.status == 200
    assert answered.url.endswith(f"/instance/state?instanceName={created_name}")


async def test_hooks_see_the_reconciliation_of_a_lost_create(server: FakeWachat) -> None:
    seen = Seen()
    server.inject(Fault.drop_after(), path="/instance/create")
    async with client(server, hooks=seen.hooks()) as wa:
        assert (await wa.instances.create("hooked_lost")).reconciled
    assert seen.of(ReconcileEvent) == [ReconcileEvent("instances.create", "settle", "found")]
    # The lookups reconciliation makes are calls of their own, observed as such.
    assert "instances.list" in {e.operation for e in seen.of(RequestEvent)}


@pytest.mark.parametrize("hook", ["on_request", "on_response"])
async def test_a_hook_that_raises_fails_the_call_labelled_and_nothing_is_resent(
    server: FakeWachat, hook: str
) -> None:
    class Broken(Exception):
        pass

    def refuse(event: Any) -> None:
        raise Broken(f"no thanks, {KEY}")

    async with client(server, hooks=Hooks(**{hook: refuse})) as wa:
        with pytest.raises(HookError) as caught:
            await wa.instances.create("hooked_refused")
    error = caught.value
    assert isinstance(error.__cause__, Broken)
    assert error.hook == hook
    assert error.name.endswith("refuse")
    assert f"the {hook} hook" in str(error)
    assert "Broken" in str(error)
    assert KEY not in str(error)
    creates = [r for r in server.requests if r.path == "/instance/create"]
    assert len(creates) == (0 if hook == "on_request" else 1)  # never resent
    assert server.count_instances("hooked_refused") == len(creates)


async def test_a_retry_hook_that_raises_stops_the_retries(server: FakeWachat) -> None:
    async def refuse(event: RetryEvent) -> None:
        raise RuntimeError("stop")

    server.inject(Fault.status(503), path="/instance/list", times=None)
    async with client(server, hooks=Hooks(on_retry=refuse)) as wa:
        with pytest.raises(HookError) as caught:
            await wa.instances.list()
    assert caught.value.hook == "on_retry"
    assert len([r for r in server.requests if r.path == "/instance/list"]) == 1


async def test_with_options_gives_a_client_its_own_hooks(server: FakeWachat) -> None:
    outer, inner = Seen(), Seen()
    async with client(server, hooks=outer.hooks()) as wa:
        derived = wa.with_options(hooks=inner.hooks())
        quiet = wa.with_options(hooks=Hooks())
        kept = wa.with_options(timeout=3.0)
        await derived.instances.list()
        await quiet.instances.list()
        assert outer.events == []
        assert len(inner.of(RequestEvent)) == 1
        await kept.instances.list()
        await wa.instances.list()
    assert len(outer.of(RequestEvent)) == 2
    assert len(inner.of(RequestEvent)) == 1


def test_the_sync_client_runs_hooks_too(thread_server: FakeWachat) -> None:
    statuses: list[int | None] = []
    hooks = Hooks(on_response=lambda event: statuses.append(event.status))
    with Wachat(KEY, base_url=thread_server.base_url, hooks=hooks) as wa:
        wa.instances.list()
    assert statuses == [200]


@pytest.mark.parametrize("hooks", [3, "print", Hooks])
def test_hooks_that_are_not_hooks_are_refused_when_the_client_is_built(hooks: Any) -> None:
    with pytest.raises(InvalidRequestError, match="hooks must be a Hooks"):
        AsyncWachat(KEY, base_url="http://127.0.0.1:9", hooks=hooks)


def test_a_hook_must_be_callable() -> None:
    with pytest.raises(InvalidRequestError, match="a hook must be callable"):
        Hooks(on_request=[print, 3])


def test_a_hook_error_survives_pickle() -> None:
    error = HookError("the on_request hook f raised", hook="on_request", name="f", attempts=2)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.hook, copy.name, copy.attempts) == (
        HookError,
        str(error),
        "on_request",
        "f",
        2,
    )


async def test_every_retry_is_heard_the_first_and_tenacitys(server: FakeWachat) -> None:
    seen = Seen()
    server.inject(Fault.status(503), path="/instance/list", times=2)
    async with client(server, hooks=seen.hooks()) as wa:
        await wa.instances.list()
    assert [e.attempt for e in seen.of(RetryEvent)] == [1, 2]
    assert [e.attempt for how, e in seen.events if isinstance(e, RetryEvent)] == [1, 1, 2, 2]
    assert [e.status for e in seen.of(ResponseEvent)] == [503, 503, 200]
