"""The pytest plugin, used exactly as a user's test suite would use it (it is registered through
the ``pytest11`` entry point when the package is installed)."""

from __future__ import annotations

from wachat_async import AsyncWachat, Wachat
from wachat_async.testing import FakeWachat


async def test_async_fixtures(wachat: AsyncWachat, wachat_server: FakeWachat) -> None:
    created = await wachat.instances.create("plugin_store")
    assert wachat.base_url == wachat_server.base_url
    assert wachat_server.count_instances("plugin_store") == 1
    assert created.instance.api_instance_name in wachat_server.instances


def test_thread_fixture_for_sync_code(wachat_server_thread: FakeWachat) -> None:
    with Wachat("test-key", base_url=wachat_server_thread.base_url) as wa:
        wa.instances.create("sync_plugin_store")
    assert wachat_server_thread.count_instances("sync_plugin_store") == 1
