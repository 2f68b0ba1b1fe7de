"""Helpers shared by the CLI commands; every command follows the same conventions (docs/cli.md):

- errors users can act on: ``with user_errors():`` -> one ``error: ...`` line on stderr, exit code 2
  (usage errors such as a bad option value are turned into the same one line by ``OneLineErrors``);
- results: ``write_json(path, rows)`` / ``write_csv(path, frame)``, where a path of ``-`` is standard
  output; ``output_console(json_path, csv_path)`` is the console for tables and notes (stderr when a
  result goes to stdout, so stdout stays pure JSON/CSV); progress bars always go to stderr;
- datasets: ``open_dataset(source)`` reads a bundled name, a folder, a long or wide Parquet/CSV file
  or a RouterEval pickle;
- help: each command's docstring ends with ``Example: recroute ...`` (one runnable example), which
  ``tests/test_cli_conventions.py`` checks for every registered command.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from recroute.errors import DataError, RecrouteError

console = Console()
err_console = Console(stderr=True)
STDOUT = "-"
# the click exception classes typer uses (recent typer versions vendor their own copy of click)
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_NO_ARGS_IS_HELP = getattr(sys.modules[typer.BadParameter.__module__], "NoArgsIsHelpError", None)


def print_error(message: str) -> None:
    """One ``error: message`` line on stderr (soft-wrapped: rich inserts no line breaks; never a traceback)."""
    err_console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors users can act on into one clear line on stderr and exit code 2 (no traceback).

    Caught: RecrouteError, ValueError (pyarrow's ArrowInvalid too), KeyError, OSError (a missing or
    unreadable file) and ImportError (an optional dependency that is not installed).
    """
    try:
        yield
    except (RecrouteError, ValueError, KeyError, OSError, ImportError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print_error(str(message) or type(exc).__name__)
        raise typer.Exit(code=2) from None


class OneLineErrors(TyperGroup):
    """The ``recroute`` group: a usage error (unknown option, bad option value, missing argument) is one
    ``error:`` line on stderr naming the problem and the command's ``--help``, exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _CLICK_EXCEPTION as exc:
            if _NO_ARGS_IS_HELP is not None and isinstance(exc, _NO_ARGS_IS_HELP):
                exc.show()  # `recroute` or `recroute data` alone: the help, as click prints it
                sys.exit(exc.exit_code)
            where = f" (see '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) is not None else ""
            print_error(exc.format_message() + where)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err_console.print("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


# ---------------------------------------------------------------------- results: JSON / CSV, "-" = stdout
def is_stdout(path: Optional[str | Path]) -> bool:
    """True when ``path`` is ``-`` (standard output)."""
    return path is not None and str(path) == STDOUT


def check_outputs(**paths: Optional[str | Path]) -> None:
    """Refuse two results on standard output, e.g. ``check_outputs(json=json_path, csv=csv_path)``."""
    on_stdout = [f"--{name.replace('_', '-')}" for name, path in paths.items() if is_stdout(path)]
    if len(on_stdout) > 1:
        raise DataError(f"{' and '.join(on_stdout)} both write to standard output ('-'); send one of them to a file")


def output_console(*paths: Optional[str | Path]) -> Console:
    """The console for tables and notes: stderr when any of ``paths`` is ``-``, else stdout."""
    return err_console if any(is_stdout(p) for p in paths) else console


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        return _clean(value.tolist())
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return _clean(value.item())
        except (ValueError, AttributeError):
            return value
    return value


def write_json(path: str | Path, payload: Any) -> Optional[Path]:
    """Write ``payload`` as JSON (NaN/inf become null): to standard output for ``-``, else atomically
    to the file (returned)."""
    text = json.dumps(_clean(payload), indent=2, allow_nan=False) + "\n"
    if is_stdout(path):
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    from recroute.atomic import atomic_file

    with atomic_file(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_csv(path: str | Path, frame) -> Optional[Path]:
    """Write a DataFrame as CSV (no index): to standard output for ``-``, else atomically to the file."""
    if is_stdout(path):
        frame.to_csv(sys.stdout, index=False)
        sys.stdout.flush()
        return None
    from recroute.atomic import atomic_file

    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


# ---------------------------------------------------------------------- datasets
INPUT_FORMATS = ("auto", "folder", "long", "wide", "routereval")


def file_layout(path: Path) -> str:
    """"long" when a Parquet/CSV file has an ``llm`` or a ``score`` column, else "wide" (reads the header only)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    else:
        import pandas as pd

        names = list(pd.read_csv(path, nrows=0).columns)
    return "long" if {"llm", "score"} & set(names) else "wide"


def open_dataset(source: str, source_format: str = "auto", prompts: Optional[Path] = None,
                 llms: Optional[Path] = None, duplicates: str = "error", rescale: bool = False):
    """A RoutingDataset from a bundled name, a dataset folder, a long or wide Parquet/CSV file
    (``--prompts`` / ``--llms`` tables for a long file) or a RouterEval ``.pkl``.

    ``source_format`` "auto" guesses: ``.pkl`` -> routereval, a file -> long when it has an ``llm`` or a
    ``score`` column, else wide, anything else -> a name or folder.
    """
    from recroute.data.catalog import load_dataset
    from recroute.data.dataset import RoutingDataset

    if source_format not in INPUT_FORMATS:
        raise DataError(f"unknown input format {source_format!r}; expected {', '.join(INPUT_FORMATS)}")
    path = Path(source)
    fmt = source_format
    if not path.exists() and path.suffix.lower() in (".csv", ".parquet", ".pkl"):
        raise DataError(f"{source}: no such file")
    if fmt == "auto":
        if source.endswith(".pkl"):
            fmt = "routereval"
        elif path.is_file():
            fmt = file_layout(path)
        else:
            fmt = "folder"
    if fmt != "folder" and not path.exists():
        raise DataError(f"{source}: no such file")  # e.g. --from long with no file there
    if fmt == "routereval":
        return RoutingDataset.from_routereval(path)
    if fmt == "long":
        return RoutingDataset.from_long(path, prompts=prompts, llms=llms, duplicates=duplicates, rescale=rescale,
                                        name=path.stem)
    if fmt == "wide":
        from recroute.data.io import read_wide

        return RoutingDataset.from_wide(read_wide(path), rescale=rescale, name=path.stem)
    return load_dataset(source)


# ---------------------------------------------------------------------- tables
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
