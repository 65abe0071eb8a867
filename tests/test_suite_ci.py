"""CI runs what the README tells a reader to run."""

from __future__ import annotations

from tests.docs import README, ROOT


def test_ci_ends_with_the_readmes_test_command() -> None:
    readme = README.read_text().splitlines()
    comment = next(n for n, line in enumerate(readme) if line.startswith("# Run the tests"))
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == readme[comment + 1]
