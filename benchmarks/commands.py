"""How long each command's `--help` example takes on this machine (for README's "Commands" table).

Each example (the ``Example:`` line of the command's help) runs as written, in a subprocess inside one
temporary folder, in the order a newcomer meets them (``fit`` before ``route``, which uses its bundle).
Recorded per command: wall seconds and the child's CPU seconds
(user + system); these machines are shared, so the CPU seconds are the better guide to an idle
machine, and the load average is recorded before and after. ``serve`` runs until stopped: skipped.

    python benchmarks/commands.py                      # every example
    python benchmarks/commands.py --only "data info,fit,route"

Writes benchmarks/results/commands.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ORDER = ("data info", "eval", "data convert", "encode", "scaling", "fit", "route", "new-tasks", "coldstart", "debias")


def examples() -> dict[str, str]:
    """{"data info": "recroute data info mmlu_pro --top 5", ...} from every registered command's help."""
    import typer

    from recroute.cli.main import app

    found: dict[str, str] = {}

    def walk(group, path: list[str]) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, [*path, name])
                continue
            for line in (command.help or "").splitlines():
                if line.strip().startswith("Example:"):
                    found[" ".join([*path, name])] = line.split("Example:", 1)[1].strip()

    walk(typer.main.get_command(app), [])
    return found


def run(example: str, cwd: Path) -> dict:
    """Run one example (``recroute`` replaced by this Python's ``-m recroute``); wall and child CPU seconds."""
    shell = example.replace("recroute ", f"{shlex.quote(sys.executable)} -m recroute ", 1) if "|" not in example \
        else example.replace("| recroute ", f"| {shlex.quote(sys.executable)} -m recroute ")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(shell, shell=True, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = {"example": example, "exit_code": done.returncode, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
           "load_avg_1min": round(os.getloadavg()[0], 2)}
    if done.returncode != 0:
        row["stderr"] = done.stderr[-500:]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated command names (default: all but serve)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "commands.json")
    args = parser.parse_args()
    from machine import describe_machine

    found = examples()
    names = [n.strip() for n in args.only.split(",")] if args.only else [n for n in ORDER if n in found]
    names += [] if args.only else sorted(set(found) - set(ORDER) - {"serve"})
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows.append({"command": name, **run(found[name], Path(tmp))})
            print(f"  {rows[-1]}", flush=True)
    payload = {
        "benchmark": "commands",
        "rows": rows,
        "skipped": ["serve (runs until stopped)"],
        "load_avg_before": load_before,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "note": "shared machine: wall time depends on the other work running; the CPU seconds of each command "
                "approximate an idle machine's wall time",
        "machine": describe_machine(),
        "date": str(date.today()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
