"""Wachat, the blocking facade, against the fake server running in its own thread."""

from __future__ import annotations

import _thread
import asyncio
import gc
import inspect
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_RETRY, KEY, without_slow_callback_reports
from wachat_async import (
    AsyncWachat,
    ConnectionState,
    CreatedInstance,
    EventLoopBlockingWarning,
    NotFoundError,
    OutcomeUnknownError,
    ServerError,
    Wachat,
    _loop_thread,
    sync,
)
from wachat_async._help import blocking_doc
from wachat_async.resources.instances import AsyncInstances
from wachat_async.resources.messages import AsyncMessages
from wachat_async.resources.webhooks import AsyncWebhooks
from wachat_async.testing import FakeWachat, Fault

ROOT = Path(__file__).resolve().parents[1]


def client(server: FakeWachat, **options: Any) -> Wachat:
    return Wachat(
        KEY, base_url=server.base_url, retry_policy=FAST_RETRY, settle_delay=0.1, **options
    )


def test_same_operations_results_and_errors(thread_server: FakeWachat) -> None:
    with client(thread_server) as wa:
        created = wa.instances.create("sync_store", number="628123456789")
        assert isinstance(created, CreatedInstance)
        name = created.instance.api_instance_name
        assert wa.instances.state(name).state is ConnectionState.CONNECTING
        assert [i.api_instance_name for i in wa.instances.list()] == [name]
        assert wa.instances.qr_image_url(name).endswith(f"instanceName={name}")
        with pytest.raises(NotFoundError):
            wa.instances.state("t1_missing")
        thread_server.scan(name)
        thread_server.inject(Fault.drop_after(), path="/send/text")
        with pytest.raises(OutcomeUnknownError):
            wa.messages.send_text(name, "628111222333", "once")
        assert len(thread_server.sent_messages(name)) == 1
        assert wa.request("GET", "/instance/list")["count"] == 1
        assert "***" in repr(wa)
        assert KEY not in repr(wa)
    assert wa.closed


def test_every_async_operation_has_a_blocking_twin() -> None:
    pairs = [
        (AsyncInstances, sync.Instances),
        (AsyncMessages, sync.Messages),
        (AsyncWebhooks, sync.Webhooks),
        (AsyncWachat, Wachat),
    ]
    for async_cls, sync_cls in pairs:
        for name, member in inspect.getmembers(async_cls, inspect.isfunction):
            if name.startswith("_") or name in ("aclose", "with_options"):
                continue
            assert name in sync_cls.__dict__, f"{sync_cls.__name__}.{name} is missing"
            assert sync_cls.__dict__[name].__doc__ == blocking_doc(member.__doc__)


def test_many_threads_share_one_client(thread_server: FakeWachat) -> None:
    with client(thread_server) as wa:

        def work(thread: int) -> int:
            for call in range(50):
                wa.instances.create(f"t{thread:02d}_{call:02d}")
            return thread

        with ThreadPoolExecutor(16) as pool:
            assert sorted(pool.map(work, range(16))) == list(range(16))
    assert len(thread_server.instances) == 16 * 50
    assert thread_server.stats["created"] == 800


def test_works_inside_a_running_loop_and_warns_once(thread_server: FakeWachat) -> None:
    _loop_thread._warned_blocking = False
    with client(thread_server) as wa:

        async def handler() -> int:
            with pytest.warns(EventLoopBlockingWarning, match="use AsyncWachat") as caught:
                wa.instances.create("from_a_loop")
            assert caught[0].filename == __file__  # it points at the caller's line
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                return len(wa.instances.list())  # no second warning

        assert asyncio.run(handler()) == 1


def test_calling_from_the_loop_thread_is_refused(thread_server: FakeWachat) -> None:
    with client(thread_server) as wa:
        name = wa.instances.create("guarded").instance.api_instance_name
        with pytest.raises(RuntimeError, match="own event loop thread"):
            wa.instances.wait_until_connected(
                name, timeout=5, on_qr=lambda qr: print(wa.instances.state(name))
            )
        assert wa.instances.state(name).api_instance_name == name  # still fine afterwards


def test_ctrl_c_cancels_the_request_and_reraises(thread_server: FakeWachat) -> None:
    thread_server.inject(Fault.slow(60), path="/instance/list")
    with client(thread_server) as wa:
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            wa.instances.list()
        assert time.monotonic() - started < 30  # well before the slow answer would come
        loop = _loop_thread.current().loop

        async def pending() -> int:
            return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

        assert asyncio.run_coroutine_threadsafe(pending(), loop).result() == 0
        assert wa.instances.list() == []  # the client still works


def test_timeout_cancels_the_request(thread_server: FakeWachat) -> None:
    thread_server.inject(Fault.slow(60), path="/instance/list")
    with client(thread_server, max_retries=0) as wa:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            wa.instances.list(timeout=0.2)
        assert time.monotonic() - started < 30  # the timeout, not the slow answer


def test_garbage_collection_closes_the_session(thread_server: FakeWachat) -> None:
    wa = client(thread_server)
    wa.instances.list()
    inner = wa._async
    del wa
    gc.collect()
    deadline = time.monotonic() + 2
    while not inner.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inner.closed


def test_with_options_shares_the_session(thread_server: FakeWachat) -> None:
    thread_server.inject(Fault.status(503), path="/instance/list", times=None)
    with client(thread_server, max_retries=2) as wa:
        quick = wa.with_options(max_retries=0)
        with pytest.raises(ServerError) as info:
            quick.instances.list()
        assert info.value.attempts == 1
        assert quick._async._transport._life is wa._async._transport._life  # one pool
        quick.close()  # a derived client closes nothing
        assert not wa.closed
    assert quick.closed


def run_script(body: str, server: FakeWachat, *flags: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from wachat_async import Wachat
        BASE = {server.base_url!r}
        KEY = {KEY!r}
    """) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, *flags, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_exit_without_close_is_quick_and_silent(thread_server: FakeWachat) -> None:
    # Exit handlers run last-registered first: the one registered before Wachat was imported
    # runs after Wachat's, so the two stamps bracket Wachat's closing alone (however long the
    # interpreter took to start or a loaded machine takes to schedule it).
    done = run_script(
        """
        import atexit
        atexit.register(lambda: print("after", time.monotonic(), flush=True))
        from wachat_async import sync  # registers its exit handler now
        wa = Wachat(KEY, base_url=BASE)
        wa.instances.create("forgotten")
        atexit.register(lambda: print("before", time.monotonic(), flush=True))
        print("created")
    """,
        thread_server,
        "-W",
        "error::ResourceWarning",
        "-X",
        "dev",
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.split("\n")[1:] if " " in line)
    assert done.stdout.startswith("created\n")
    assert without_slow_callback_reports(done.stderr) == ""
    # Closing the session, not the 2 s cleanup timeout nor a thread holding the exit.
    assert float(lines["after"]) - float(lines["before"]) < 1.5
    assert thread_server.count_instances("forgotten") == 1


def test_fork_child_gets_its_own_loop_and_the_parent_keeps_working(
    thread_server: FakeWachat,
) -> None:
    done = run_script(
        """
        wa = Wachat(KEY, base_url=BASE)
        wa.instances.create("before_fork")
        pid = os.fork()
        if pid == 0:
            child = Wachat(KEY, base_url=BASE)
            child.instances.create("in_child")
            wa.instances.create("inherited_in_child")   # rebuilt on the child's own loop
            child.close()
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        wa.instances.create("after_fork")
        print(os.waitstatus_to_exitcode(status))
    """,
        thread_server,
        "-W",
        "error::ResourceWarning",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert "Unclosed" not in done.stderr
    for name in ("before_fork", "in_child", "inherited_in_child", "after_fork"):
        assert thread_server.count_instances(name) == 1, name
