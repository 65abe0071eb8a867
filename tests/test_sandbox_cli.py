"""``wachat sandbox`` across restarts: its key from ``--api-key``, else ``$WACHAT_API_KEY`` (not
printed), else a new one; port 8765 unless taken (then another, said); no ``--sandbox`` offered
on itself; ``sandbox deliveries`` shows where each delivery went."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket

import pytest

from tests.conftest import KEY
from tests.test_cli_helpers import env, main, spawn, wachat
from wachat_async import AsyncWachat, Wachat
from wachat_async.cli import sandbox as sandbox_cli
from wachat_async.cli.outcome import CliError
from wachat_async.errors import AuthenticationError
from wachat_async.testing import FakeWachat
from wachat_async.testing._deliveries import Delivery


def serve_args(port: int | None) -> argparse.Namespace:
    return argparse.Namespace(
        host="127.0.0.1", port=port, auto_scan=None, rate_limit=None, strict=False, allow_host=[]
    )


@pytest.fixture
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_the_default_port_is_kept_and_a_taken_one_is_replaced(
    free_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_cli, "DEFAULT_PORT", free_port)
    first, taken = await sandbox_cli._start(serve_args(None), KEY)
    try:
        assert (first.port, taken) == (free_port, False)
        second, taken = await sandbox_cli._start(serve_args(None), KEY)
        try:
            assert taken
            assert second.port not in (free_port, 0)
        finally:
            await second.close()
        with pytest.raises(CliError, match=f"port {free_port} is taken"):
            await sandbox_cli._start(serve_args(free_port), KEY)  # asked for: no other
    finally:
        await first.close()
    # Given back, the port is the sandbox's again.
    again, taken = await sandbox_cli._start(serve_args(None), KEY)
    await again.close()
    assert (again.port, taken) == (free_port, False)


def test_a_bad_allowed_host_is_a_usage_error() -> None:
    done = wachat("sandbox", "--port", "0", "--allow-host", "sandbox:port", environ=env())
    assert done.code == 2
    assert "--allow-host" in done.err
    assert "Traceback" not in done.err


def read_until(process_out: object, marker: str) -> list[str]:
    lines: list[str] = []
    while not lines or marker not in lines[-1]:
        line = process_out.readline()  # type: ignore[attr-defined]
        assert line, "".join(lines)
        lines.append(line)
    return lines


async def test_the_key_comes_from_the_environment_and_is_not_printed() -> None:
    key = "sandbox-from-my-environment"
    process = spawn("sandbox", "--port", "0", environ=env(WACHAT_API_KEY=key))
    assert process.stdout is not None
    try:
        lines = await asyncio.to_thread(read_until, process.stdout, "A restart keeps")
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    text = "".join(lines) + rest
    assert process.returncode == 0
    assert key not in text
    # Piped, the banner's record is one line of key=value fields.
    record = dict(
        field.split("=", 1)
        for field in next(line for line in lines if "base_url=" in line).split("\t")
    )
    assert record["api_key"].strip() == "$WACHAT_API_KEY (not shown)"
    assert "A restart keeps this port and key." in text
    base_url = record["base_url"].strip()
    assert base_url.startswith("http://127.0.0.1:")


async def test_the_environment_key_is_the_one_it_accepts() -> None:
    key = "sandbox-env-key-accepted"
    process = spawn("--json", "sandbox", "--port", "0", environ=env(WACHAT_API_KEY=key))
    assert process.stdout is not None
    try:
        where = json.loads(await asyncio.to_thread(process.stdout.readline))
        assert where["api_key"] is None  # from the environment: not printed, JSON too
        async with AsyncWachat(key, base_url=where["base_url"]) as wa:
            assert await wa.instances.list() == []
        async with AsyncWachat("another-key", base_url=where["base_url"]) as wa:
            with pytest.raises(AuthenticationError):
                await wa.instances.list()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_the_help_says_how_it_keeps_its_address_and_offers_no_sandbox_on_itself() -> None:
    done = wachat("sandbox", "--help", environ=env())
    assert done.code == 0
    text = " ".join(done.out.split())
    assert "--sandbox" not in text
    assert "port 8765" in text
    assert "$WACHAT_API_KEY" in text
    assert "--allow-host" in text
    for verb in ("scan", "deliveries"):
        assert "--sandbox" not in wachat("sandbox", verb, "--help", environ=env()).out
    assert "--sandbox" in wachat("instances", "list", "--help", environ=env()).out


def test_deliveries_show_their_url_when_the_record_has_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "http://127.0.0.1:9/wachat/a/long/path/that/is/never/cut/short/in/the/table"
    as_json = Delivery.as_json
    monkeypatch.setattr(Delivery, "as_json", lambda self: as_json(self) | {"url": url})
    with (
        FakeWachat.in_thread(api_keys={KEY}) as server,
        Wachat(KEY, base_url=server.base_url) as wa,
    ):
        name = wa.instances.create("store").instance.api_instance_name
        wa.webhooks.upsert(url, instance_name=name, secret="whsec_cli", events=["*"])
        server.receive_message(name, "628111222333", "hi")
        asyncio.run_coroutine_threadsafe(server.flush_deliveries(), server._loop).result(30)  # type: ignore[arg-type]
        done = main(
            capsys, "--api-key", KEY, "--base-url", server.base_url, "sandbox", "deliveries"
        )
    assert done.code == 0, done.err
    assert url in done.out
    assert name in done.out
