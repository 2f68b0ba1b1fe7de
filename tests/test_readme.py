"""README.md keeps exactly two set-up commands, and .ci/run runs the test one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_has_exactly_two_setup_commands():
    text = (REPO / "README.md").read_text()
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", setup, re.S)
    assert len(blocks) == 2
    assert all(len(b.strip().splitlines()) == 1 for b in blocks)
    assert "pytest" in blocks[1] and "recroute" in blocks[0]


def test_ci_reads_the_readme_test_command():
    out = subprocess.run([sys.executable, str(REPO / ".ci" / "readme_command.py"), "test"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("pytest -q")
    assert "readme_command.py test" in (REPO / ".ci" / "run").read_text()
