"""Entry point of the ``recroute`` command: one typer app, sub-commands registered per module."""

from __future__ import annotations

import importlib
import warnings

import typer

from recroute.cli.common import OneLineErrors

app = typer.Typer(
    cls=OneLineErrors,
    help="recroute: route each prompt to the best LLM, treating routing as a recommender problem.\n\n"
         "Example: recroute eval --dataset mmlu_pro",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# each module defines register(app); kept small so `recroute --help` stays fast
COMMAND_MODULES = ("recroute.cli.data_cmd", "recroute.cli.encode_cmd", "recroute.cli.eval_cmd",
    "recroute.cli.serve_cmd", "recroute.cli.debias_cmd", "recroute.cli.newtasks_cmd", "recroute.cli.coldstart_cmd",
    "recroute.cli.gateway_cmd",
    "recroute.cli.cost_cmd",
    "recroute.cli.feedback_cmd",
    "recroute.cli.audit_cmd",
)

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one short line on stderr (no source line), e.g. dropped metadata rows."""
    from rich.markup import escape

    from recroute.cli.common import err_console

    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


@app.callback()
def _setup() -> None:
    """recroute: route each prompt to the best LLM, treating routing as a recommender problem.

    Example: recroute eval --dataset mmlu_pro
    """
    warnings.showwarning = _show_warning


def main() -> None:
    app()


if __name__ == "__main__":
    main()
