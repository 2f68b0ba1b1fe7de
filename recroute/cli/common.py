"""Helpers shared by the CLI commands: clean errors, JSON output, rich tables."""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recroute.errors import RecrouteError

console = Console()
err_console = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors users can act on into one clear line on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except (RecrouteError, ValueError, FileNotFoundError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err_console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return _clean(value.item())
        except (ValueError, AttributeError):
            return value
    return value


def write_json(path: str | Path, payload: Any) -> Path:
    """Write JSON atomically (NaN/inf become null)."""
    from recroute.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(_clean(payload), indent=2) + "\n")
    return Path(path)


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats rounded, None/NaN as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def table_from_rows(title: str, rows: list[dict], columns: list[str], digits: int = 4) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("llm", "benchmark", "router", "group", "name") else "right")
    for row in rows:
        table.add_row(*(fmt(row.get(c), digits) for c in columns))
    return table
