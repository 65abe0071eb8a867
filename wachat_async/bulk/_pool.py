"""A fixed pool of workers over a lazily read input: what bulk jobs share.

``concurrency`` workers pull items from one source (a plain or async iterable) and hand
results over a queue; no task per item. A slot is taken before an item is read and given back
once its result is handed out, so at most ``concurrency`` items are between the input and the
caller at any time, however long the input.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

I = TypeVar("I")  # noqa: E741 - an input item
R = TypeVar("R")

#: What ``read()`` returns after the last item.
END: Any = object()


def reader(items: Iterable[I] | AsyncIterable[I]) -> Callable[[], Awaitable[Any]]:
    """One ``await read()`` per item, ``END`` after the last; plain iterables are read
    directly (wrapping them in an async generator would cost an extra hop per item)."""
    if isinstance(items, AsyncIterable):
        source = aiter(items)

        async def read_async() -> Any:
            return await anext(source, END)

        return read_async
    iterator = iter(items)

    async def read() -> Any:
        return next(iterator, END)

    return read


async def run_pool(
    items: Iterable[I] | AsyncIterable[I],
    work: Callable[[int, I], Awaitable[R]],
    concurrency: int,
    *,
    on_start: Callable[[], None] | None = None,
) -> AsyncIterator[R]:
    """``work(index, item)`` for every item, ``concurrency`` at a time; results in completion
    order. An exception from ``work`` or the input stops the pool and is raised here; closing
    the iterator cancels what is in flight."""
    next_item = reader(items)
    slots = asyncio.Semaphore(concurrency)
    results: asyncio.Queue[R | BaseException | None] = asyncio.Queue()
    positions = itertools.count()

    async def worker() -> None:
        try:
            while True:
                await slots.acquire()
                item = await next_item()
                if item is END:
                    slots.release()
                    return
                if on_start is not None:
                    on_start()
                results.put_nowait(await work(next(positions), item))
        except Exception as exc:  # handed to the consumer, which raises it
            results.put_nowait(exc)
        finally:
            results.put_nowait(None)  # this worker is done

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    running = concurrency
    try:
        while running:
            outcome = await results.get()
            if outcome is None:
                running -= 1
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            slots.release()
            yield outcome
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
