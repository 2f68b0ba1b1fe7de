"""Entry point of the ``recroute`` command: one typer app, sub-commands registered per module."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    help="recroute: route each prompt to the best LLM, treating routing as a recommender problem.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# each module defines register(app); kept small so `recroute --help` stays fast
COMMAND_MODULES = ("recroute.cli.data_cmd", "recroute.cli.encode_cmd", "recroute.cli.eval_cmd")

for _module in COMMAND_MODULES:
    try:
        importlib.import_module(_module).register(app)
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != _module:
            raise


def main() -> None:
    app()


if __name__ == "__main__":
    main()
