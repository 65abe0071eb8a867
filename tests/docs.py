"""The Python blocks of README.md and examples/: what the docs tests run and mypy checks.

``python -m tests.docs DIR`` writes each block to ``DIR/readme_block_N.py`` (the typecheck
session runs ``mypy --strict`` on them).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path = README) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return _BLOCK.findall(path.read_text())


def example_files() -> dict[str, str]:
    """examples/*.py by name, with their text."""
    return {path.name: path.read_text() for path in sorted(EXAMPLES.glob("*.py"))}


def write_blocks(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for number, block in enumerate(python_blocks(), start=1):
        target = directory / f"readme_block_{number}.py"
        target.write_text(block)
        written.append(target)
    return written


if __name__ == "__main__":
    for path in write_blocks(Path(sys.argv[1])):
        print(path)
