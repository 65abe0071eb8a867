"""``with_options``: a client with other options over the same connection pool, built without a
pool of its own, whose options (size caps, timeouts) really apply to its calls."""

from __future__ import annotations

import pytest

from tests.conftest import FAST_RETRY, KEY
from wachat_async import AsyncWachat, ResponseTooLargeError
from wachat_async.testing import FakeWachat


async def test_derived_caps_apply_and_the_pool_is_shared(server: FakeWachat) -> None:
    async with AsyncWachat(KEY, base_url=server.base_url, retry_policy=FAST_RETRY) as wa:
        await wa.instances.create("shop")
        small = wa.with_options(max_response_bytes=64)
        with pytest.raises(ResponseTooLargeError):
            await small.instances.list()
        assert len(await wa.instances.list()) == 1  # the original keeps its own cap
        assert small._transport._life is wa._transport._life  # one pool
        await small.aclose()  # closes nothing
        assert not wa.closed
    assert small.closed  # the pool closed with the original


async def test_with_options_builds_no_pool_of_its_own(
    server: FakeWachat, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncWachat(KEY, base_url=server.base_url) as wa:
        built: list[object] = []
        monkeypatch.setattr(
            AsyncWachat, "__init__", lambda self, *a, **k: built.append(self), raising=True
        )
        derived = wa.with_options(timeout=3.0)
        assert built == []
        assert derived.settings.timeout == 3.0
        assert await derived.instances.list() == []
