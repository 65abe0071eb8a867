"""examples/order_bot.py kept to its contract, driven as a subprocess through the sandbox's
control API: in memory; on SQLite with kill -9 and a restart between the question and the
answer; as two replicas on one real redis-server, one killed mid-conversation, 20 customers at
once. Every customer message is answered exactly once."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import KEY
from wachat_async import AsyncWachat
from wachat_async.testing import Customer, FakeWachat

ROOT = Path(__file__).resolve().parent.parent
ORDER_BOT = ROOT / "examples" / "order_bot.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class OrderBot:
    """One order_bot process."""

    def __init__(self, server: FakeWachat, instance: str, port: int, storage: str) -> None:
        self.args = [
            str(ORDER_BOT),
            "--instance",
            instance,
            "--port",
            str(port),
            "--storage",
            storage,
        ]
        self.env = {
            **os.environ,
            "WACHAT_API_KEY": KEY,
            "WACHAT_BASE_URL": server.base_url,
            "PYTHONPATH": str(ROOT),
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *self.args, env=self.env, stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        assert line.startswith(b"ready: http://127.0.0.1:"), line

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no cleanup at all
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)


@pytest.fixture
async def instance(server: FakeWachat, wa: AsyncWachat) -> str:
    created = await wa.instances.create("orders")
    name = created.instance.api_instance_name
    server.scan(name)
    return name


@pytest.fixture
async def bots() -> AsyncIterator[list[OrderBot]]:
    started: list[OrderBot] = []
    yield started
    for bot in started:
        await bot.stop()


async def launched(bots: list[OrderBot], *args: object) -> OrderBot:
    bot = OrderBot(*args)  # type: ignore[arg-type]
    bots.append(bot)
    await bot.start()
    return bot


async def up_to_the_question(customer: Customer) -> None:
    await customer.send("hi")
    menu = await customer.expect_reply()
    assert menu.kind == "list"
    assert {"track", "human"} <= set(menu.options)
    await customer.choose("track")
    assert "order number" in (await customer.expect_reply()).text


async def the_rest(customer: Customer, order: str) -> None:
    await customer.send(order)
    answer = await customer.expect_reply()
    assert answer.kind == "text"
    assert f"Order {order} is " in answer.text
    await customer.choose("human")
    assert "person" in (await customer.expect_reply()).text


async def test_the_whole_conversation_in_memory(
    server: FakeWachat, instance: str, bots: list[OrderBot]
) -> None:
    await launched(bots, server, instance, free_port(), "memory")
    async with Customer(server.control_url, instance, "628111000001") as customer:
        await up_to_the_question(customer)
        await the_rest(customer, "A-17")
        await customer.send("thanks")
        assert (await customer.expect_reply()).kind == "list"  # not understood: the menu
        await server.flush_deliveries()
        await customer.expect_no_more()


async def test_sqlite_survives_kill_9_between_the_question_and_the_answer(
    server: FakeWachat, instance: str, bots: list[OrderBot], tmp_path: Path
) -> None:
    port, storage = free_port(), f"sqlite:{tmp_path / 'bot.db'}"
    first = await launched(bots, server, instance, port, storage)
    async with Customer(server.control_url, instance, "628111000002") as customer:
        await up_to_the_question(customer)
        await first.kill()
        await launched(bots, server, instance, port, storage)
        await the_rest(customer, "B-42")
        await server.flush_deliveries()
        await customer.expect_no_more()
    hooks = [h for h in server.webhooks.values() if h.instance_name == instance]
    assert len(hooks) == 1  # the restart took its own webhook over


async def test_two_replicas_on_redis_one_killed_twenty_customers(
    server: FakeWachat, instance: str, redis_url: str, bots: list[OrderBot]
) -> None:
    doomed = await launched(bots, server, instance, free_port(), redis_url)
    await launched(bots, server, instance, free_port(), redis_url)
    customers = [
        Customer(server.control_url, instance, f"62811100{i:04d}", timeout=60) for i in range(20)
    ]
    try:
        await asyncio.gather(*(up_to_the_question(c) for c in customers))
        await doomed.kill()
        await asyncio.gather(*(the_rest(c, f"C-{i}") for i, c in enumerate(customers)))
        await server.flush_deliveries()
        for customer in customers:
            await customer.expect_no_more()
    finally:
        for customer in customers:
            await customer.close()
    # Both replicas got the first messages (a webhook each); only one answered each of them.
    answered = {
        d.url for d in server.deliveries if d.event == "messages.upsert" and d.status == 200
    }
    assert len(answered) == 2
