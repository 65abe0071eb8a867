"""The README's broadcast example, run twice as a reader would: the second run sends nothing
(the instance is found again, so every message's key is the same and the journal skips it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.docs import ROOT, python_blocks
from wachat_async.testing import FakeWachat

KEY = "docs-key"


def test_re_running_the_readme_broadcast_sends_nothing_again(tmp_path: Path) -> None:
    (block,) = [b for b in python_blocks() if "send_many" in b]
    script = tmp_path / "broadcast.py"
    script.write_text(block)
    with FakeWachat.in_thread(api_keys={KEY}, auto_scan=0.05) as sandbox:
        env = {
            **os.environ,
            "WACHAT_API_KEY": KEY,
            "WACHAT_BASE_URL": sandbox.base_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
        }
        runs = [
            subprocess.run(
                [sys.executable, str(script)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            for _ in range(2)
        ]
        (instance,) = sandbox.instances
        sent = sandbox.sent_messages(instance)
    assert [line.split()[1] for line in runs[0].stdout.splitlines()] == ["sent", "sent"]
    assert [line.split()[1] for line in runs[1].stdout.splitlines()] == ["skipped", "skipped"]
    assert len(sent) == 2
