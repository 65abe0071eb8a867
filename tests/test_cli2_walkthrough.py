"""The README's first-bot walk-through runs top to bottom, as written, against a ``wachat
sandbox`` process: its shell steps (no step colliding with another: the Python example makes
a store of its own), then its Python example, scanned by friendly name as the README says,
then cleaned up with the command it gives.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.docs import README
from tests.test_cli_helpers import Sandbox, eventually, running_sandbox, wachat
from wachat_async import Wachat

_SECTION = re.compile(r"^## Your first bot.*?(?=^## )", re.S | re.M)
_BASH = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
_PYTHON = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def walkthrough() -> tuple[str, list[str], str]:
    """The section's text, its shell blocks and its Python block."""
    section = _SECTION.search(README.read_text())
    assert section is not None
    text = section.group()
    (python,) = _PYTHON.findall(text)
    return text, _BASH.findall(text), python


def names(sandbox: Sandbox) -> list[tuple[str, str, str]]:
    with Wachat(sandbox.api_key, base_url=sandbox.base_url) as wa:
        return [
            (i.instance_name or "", i.api_instance_name, str(i.state)) for i in wa.instances.list()
        ]


def test_the_first_bot_walkthrough_runs_top_to_bottom(tmp_path: Path) -> None:
    text, (serve, steps), python = walkthrough()
    assert serve.split() == ["wachat", "sandbox"]  # no --auto-scan: the scan step is needed
    assert "wachat sandbox scan $STORE" in steps
    with running_sandbox() as sandbox:
        # `wachat` as installed: this checkout's, through the interpreter running the tests
        wachat_is = f'wachat() {{ {shlex.quote(sys.executable)} -m wachat_async "$@"; }}\n'
        shell = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", wachat_is + steps],
            capture_output=True,
            text=True,
            env=sandbox.env(),
            cwd=tmp_path,  # the story saves its QR PNGs where it runs
            timeout=300,
            check=False,
        )
        assert shell.returncode == 0, shell.stdout + shell.stderr
        assert "Do you deliver?" in shell.stdout
        assert names(sandbox) == []  # the last step cleaned up

        story = subprocess.Popen(
            [sys.executable, "-c", python],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=sandbox.env(),
            cwd=tmp_path,  # the story saves its QR PNGs where it runs
        )
        try:
            eventually(lambda: any(n[0] == "bandung_store" for n in names(sandbox)))
            scanned = wachat("sandbox", "scan", "bandung_store", environ=sandbox.env())
            assert scanned.code == 0, scanned.err
            out, err = story.communicate(timeout=120)
        finally:
            if story.poll() is None:
                story.kill()
                story.wait()
        assert story.returncode == 0, err
        (instance,) = names(sandbox)
        assert instance[0] == "bandung_store"
        assert out.startswith(instance[1] + " ")
        match = re.search(r"Then `(wachat instances delete --logout bandung_store)`", text)
        assert match is not None
        cleaned = wachat(*match.group(1).split()[1:], environ=sandbox.env())
        assert cleaned.code == 0, cleaned.err
        assert names(sandbox) == []
