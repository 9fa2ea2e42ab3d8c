"""The README's set-up block is what CI runs (scripts/readme-command.sh): keep its form."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def first_block() -> list[str]:
    text = README.read_text()
    start = text.index("```bash\n") + len("```bash\n")
    return text[start: text.index("```", start)].strip().splitlines()


@pytest.mark.skipif(not README.exists(), reason="README not shipped (installed package only)")
def test_first_block_has_the_two_commands() -> None:
    lines = first_block()
    assert lines[0] == "# main job" and lines[2] == "# tests"
    main, tests = lines[1], lines[3]
    for cmd in (main, tests):
        assert cmd.startswith("pip install torch==2.13.0 && pip install \".[")
    assert "edgepack " in main and tests.endswith("pytest -q") and '".[test]"' in tests


@pytest.mark.skipif(not (ROOT / "scripts" / "readme-command.sh").exists(), reason="no scripts/")
def test_readme_command_script_extracts_them() -> None:
    # awk extraction only (no install): the script prints "+ <command>" before running it, so
    # run it with a fake bash that only echoes.
    lines = first_block()
    out = subprocess.run(
        ["awk", '-v', 'm=# tests', '$0 == m {getline; print; exit}', str(README)],
        capture_output=True, text=True, check=True).stdout.strip()
    assert out == lines[3]
