"""The README's example, copied into a file, runs as shown (as a new user would try it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_screen = "\n".join(text.splitlines()[:25])
    assert "make demo" in first_screen
    assert "make test" in first_screen


def test_readme_example_runs_as_shown(tmp_path: Path) -> None:
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert blocks, "the README has no python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Dear customer, facts about Handle ticket #456." in done.stdout
    assert (tmp_path / "jobs.db").exists()


def test_the_project_points_only_at_files_inside_it() -> None:
    """README, ARCHITECTURE and the code name no file outside the repository, and their links resolve."""
    for name in ("README.md", "ARCHITECTURE.md", "CHANGELOG.md"):
        text = (ROOT / name).read_text()
        assert "../shared" not in text, f"{name} points outside the repository"
        for target in re.findall(r"\]\(([^)#:]+)\)", text):
            assert (ROOT / target).resolve().is_relative_to(ROOT), f"{name} links outside: {target!r}"
            assert (ROOT / target).exists(), f"{name} links to a missing file {target!r}"
    for path in (ROOT / "durapod").rglob("*.py"):
        assert "../shared" not in path.read_text(), path
