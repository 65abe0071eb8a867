"""Errors are values: every exported exception survives pickle (every protocol), copy and
deepcopy with its type and fields, and crosses a process boundary intact; and the messages
teach what to do."""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import multiprocessing
import pickle
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import FAST_RETRY, serving
from tests.edges import KEY, Front, json_answer
from wachat_async import (
    APITimeoutError,
    AsyncWachat,
    AuthenticationError,
    ConnectionState,
    InstanceInfo,
    InstanceState,
    MessageRecord,
    MessageStatus,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
    errors,
)
from wachat_async._request import Call
from wachat_async.models import NonEmptyStr
from wachat_async.testing import FakeWachat, Fault

CALL = Call("instances.create", "POST", "/instance/create")
INFO = InstanceInfo(
    api_instance_name=NonEmptyStr("t1_a_shop"), instance_name="shop", raw={"x": [1]}
)
STATE = InstanceState(api_instance_name=NonEmptyStr("t1_a_shop"), state=ConnectionState("pairing"))
FAILURE = errors.APIConnectionError(
    "Connection lost", failure=errors.FailureClass.AMBIGUOUS, method="POST", path="/x"
)

API = {
    "status_code": 0,
    "message": "server words",
    "body": '{"error": "server words"}',
    "method": "GET",
    "path": "/instance/state",
    "headers": {"X-Request-Id": "r1"},
    "retry_after": 1.5,
    "hint": "a hint",
    "attempts": 3,
}
STATUS = {
    "APIError": 418,
    "BadRequestError": 400,
    "AuthenticationError": 401,
    "PermissionDeniedError": 403,
    "NotFoundError": 404,
    "ConflictError": 409,
    "RateLimitError": 429,
    "ServerError": 500,
    "UpstreamError": 502,
    "RedirectError": 308,
}
SAMPLES: dict[str, dict[str, Any]] = {
    "WachatError": {"message": "m", "attempts": 2},
    "InvalidRequestError": {"message": "name must not be empty"},
    "APIConnectionError": {
        "message": "reset",
        "failure": errors.FailureClass.NOT_SENT,
        "method": "GET",
        "path": "/p",
        "attempts": 2,
    },
    "APITimeoutError": {
        "message": "Timed out after 1 s",
        "failure": errors.FailureClass.AMBIGUOUS,
        "method": "POST",
        "path": "/instance/create",
        "attempts": 4,
    },
    "ResponseValidationError": {"message": "bad", "field": "a.b", "body": "{}", "attempts": 2},
    "ResponseTooLargeError": {"message": "big", "limit": 10, "field": None, "body": "x" * 10},
    "OutcomeUnknownError": {
        "message": "may have happened",
        "request": CALL,
        "candidates": [INFO, INFO],
        "cause": FAILURE,
        "attempts": 2,
    },
    "UnreadableOutcomeError": {
        "message": "unreadable",
        "field": None,
        "body": "<html>",
        "status_code": 201,
        "request": CALL,
        "candidates": [INFO],
        "cause": FAILURE,
    },
    "WaitTimeoutError": {"message": "not connected", "last_state": STATE, "attempts": 7},
    "HookError": {"message": "hook failed", "hook": "on_request", "name": "audit", "attempts": 2},
    "MessageFailedError": {
        "message": "message 3EB0 failed",
        "record": MessageRecord("3EB0", MessageStatus.FAILED, instance="t1_x_store"),
    },
    "WebhookSignatureError": {"message": "stale"},
    "WebhookPayloadError": {"message": "not JSON"},
    "JournalError": {"message": "damaged", "path": "/tmp/j.db"},
    "JournalInUseError": {"message": "in use", "path": "/tmp/j.db"},
    "JournalMismatchError": {"message": "other account", "path": "/tmp/j.db"},
}

EXCEPTIONS = sorted(
    name
    for name in errors.__all__
    if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), BaseException)
)


def build(name: str) -> BaseException:
    cls = getattr(errors, name)
    if name in STATUS:
        kwargs = {**API, "status_code": STATUS[name]}
        if name == "RedirectError":
            kwargs["location"] = "https://elsewhere.example/api/v1"
        status = kwargs.pop("status_code")
        message = kwargs.pop("message")
        body = kwargs.pop("body")
        return cls(status, message, body, **kwargs)  # type: ignore[no-any-return]
    kwargs = dict(SAMPLES[name])
    message = kwargs.pop("message")
    return cls(message, **kwargs)  # type: ignore[no-any-return]


def same(a: BaseException, b: BaseException) -> None:
    assert type(a) is type(b)
    assert a.args == b.args
    assert str(a) == str(b)
    assert repr(a) == repr(b)
    assert set(vars(a)) == set(vars(b))
    for field, value in vars(a).items():
        other = vars(b)[field]
        if isinstance(value, BaseException):
            same(value, other)
        else:
            assert other == value, field


def test_every_exported_exception_is_sampled() -> None:
    assert set(EXCEPTIONS) == set(SAMPLES) | set(STATUS)


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_exception_round_trips_pickle_copy_and_deepcopy(name: str) -> None:
    error = build(name)
    assert vars(error)  # fields were set
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        same(error, pickle.loads(pickle.dumps(error, protocol=protocol)))
    same(error, copy.copy(error))
    same(error, copy.deepcopy(error))


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_raised_and_chained_exception_still_pickles(name: str) -> None:
    """Raised for real (a traceback, a context): pickling keeps type and fields."""
    try:
        try:
            raise RuntimeError("context")
        except RuntimeError:
            raise build(name) from FAILURE
    except BaseException as raised:
        error = raised
    restored = pickle.loads(pickle.dumps(error))
    same(build(name), restored)


# -- across a process boundary ----------------------------------------------------------------


async def _call_with_a_wrong_key() -> None:
    async with (
        FakeWachat(api_keys={"the-right-key-0123456789"}) as server,
        AsyncWachat("a-wrong-key-0123456789", base_url=server.base_url) as wa,
    ):
        await wa.instances.list()


def fail_in_worker() -> None:
    """Runs in a worker process: a real call that ends in AuthenticationError."""
    asyncio.run(_call_with_a_wrong_key())


def fail_against(base_url: str) -> None:
    async def call() -> None:
        async with AsyncWachat(
            KEY, base_url=base_url, retry_policy=RetryPolicy(max_retries=1, initial_backoff=0.01)
        ) as wa:
            await wa.instances.qr("t1_x_shop")

    asyncio.run(call())


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_error_in_a_process_pool_worker_arrives_typed(method: str) -> None:
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(fail_in_worker)
        with pytest.raises(AuthenticationError) as caught:
            future.result(timeout=120)
    error = caught.value
    assert error.status_code == 401
    assert error.method == "GET"
    assert error.path == "/instance/list"
    assert "Invalid or missing API key" in str(error)


async def test_errors_from_the_parents_server_arrive_typed() -> None:
    """The server in the parent; each worker's error crosses back with its fields."""

    async def script(request: web.Request, body: bytes) -> web.StreamResponse:
        return json_answer(404, {"success": False, "error": "Instance not found"})

    async with FakeWachat(api_keys={KEY}) as fake, Front(fake, script) as api:
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        with (
            concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool,
            pytest.raises(NotFoundError) as caught,
        ):
            await loop.run_in_executor(pool, fail_against, api.base_url)
    assert caught.value.hint is not None
    assert "API instance name" in caught.value.hint
    assert caught.value.attempts == 1


# -- errors that teach --------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeWachat]:
    async with FakeWachat(api_keys={KEY}, qr_pool=2) as server:
        yield server


async def test_404_on_an_instance_hints_at_the_two_names(fake: FakeWachat) -> None:
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        created = await wa.instances.create("jakarta_store")
        for operation in (
            wa.instances.state("jakarta_store"),
            wa.instances.qr("jakarta_store"),
            wa.instances.delete("jakarta_store"),
            wa.messages.send_text("jakarta_store", "628123456789", "hi"),
        ):
            with pytest.raises(NotFoundError) as caught:
                await operation
            assert caught.value.hint is not None
            assert "api_instance_name" in caught.value.hint
            assert "friendly" in str(caught.value)
    assert created.instance.api_instance_name != "jakarta_store"


@pytest.mark.parametrize("wrong_path", ["", "/api", "/v1", "/api/v2"])
async def test_404_that_is_not_the_apis_hints_at_base_url(wrong_path: str) -> None:
    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="404: Not Found")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    async with serving(app) as root, AsyncWachat(KEY, base_url=root + wrong_path) as wa:
        for operation in (wa.instances.list(), wa.instances.state("t1_a_shop")):
            with pytest.raises(NotFoundError) as caught:
                await operation
            message = str(caught.value)
            assert "/api/v1" in message
            assert "base_url" in message
            assert (root + wrong_path) in message


async def test_timeout_after_several_attempts_says_how_many_over_how_long(
    fake: FakeWachat,
) -> None:
    fake.inject(Fault.slow(0.4), path="/instance/list", times=None)
    async with AsyncWachat(
        KEY, base_url=fake.base_url, timeout=0.1, retry_policy=FAST_RETRY, max_retries=2
    ) as wa:
        with pytest.raises(APITimeoutError) as caught:
            await wa.instances.list()
    error = caught.value
    assert error.attempts == 3
    message = str(error)
    assert "3 attempts" in message
    assert " s" in message
    assert "0.1 s" in message


async def test_a_long_retry_after_is_raised_at_once_and_said(fake: FakeWachat) -> None:
    fake.inject(Fault.status(429, retry_after=120), path="/instance/list")
    async with AsyncWachat(KEY, base_url=fake.base_url) as wa:
        with pytest.raises(RateLimitError) as caught:
            await wa.instances.list()
    error = caught.value
    assert error.retry_after == 120
    assert error.attempts == 1
    assert "120 s" in str(error)
    assert "max_retry_after" in str(error)
    assert fake.stats["requests GET /instance/list"] == 1
