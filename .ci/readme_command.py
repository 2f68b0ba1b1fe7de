"""Print one of README.md's two set-up commands: `main` or `test` (the fenced blocks after their headings)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

HEADINGS = {"main": "Run the main job", "test": "Run the tests"}


def command(which: str, readme: Path = Path(__file__).resolve().parents[1] / "README.md") -> str:
    text = readme.read_text()
    heading = HEADINGS[which]
    match = re.search(rf"### {re.escape(heading)}.*?```(?:bash|sh)?\n(.*?)```", text, re.S)
    if not match:
        raise SystemExit(f"README.md has no fenced command under '### {heading}'")
    return match.group(1).strip()


if __name__ == "__main__":
    print(command(sys.argv[1]))
