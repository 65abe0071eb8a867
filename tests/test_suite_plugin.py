"""The pytest plugin in a fresh project: a run prints its result, not pytest-asyncio's warnings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNSET = '"asyncio_default_fixture_loop_scope" is unset'

A_USERS_TEST = """
async def test_signup(wachat, wachat_server):
    await wachat.instances.create("store-42")
    assert wachat_server.count_instances("store-42") == 1
"""


def pytest_in_a_fresh_project(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nasyncio_mode = "auto"\n')
    (tmp_path / "test_signup.py").write_text(A_USERS_TEST)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_fresh_project_runs_without_the_loop_scope_warning(tmp_path: Path) -> None:
    done = pytest_in_a_fresh_project(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "warning" not in (done.stdout + done.stderr).lower()


def test_without_the_plugin_pytest_asyncio_warns(tmp_path: Path) -> None:
    """The check above can fail: pytest-asyncio warns when nothing silences it (once a version
    stops warning, this fails, and the plugin's filter can go)."""
    done = pytest_in_a_fresh_project(tmp_path, "-p", "no:wachat_async")
    assert UNSET in done.stdout + done.stderr
