"""Every command that encodes prompts takes its default encoder from the one constant, DEFAULT_ENCODER.

The walk finds every command with an ``--encoder`` option; each is run on a small dataset with prompt
texts and no stored embeddings, so it must encode, with get_encoder replaced by a spy that records the
name asked for and stops the command there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import recroute.encoders as encoders_pkg
import recroute.encoders.base as encoders_base
import recroute.encoders.embed as encoders_embed
from recroute.cli.main import app
from recroute.data.dataset import RoutingDataset
from recroute.encoders.base import DEFAULT_ENCODER, canonical_name
from recroute.feedback.logs import write_decision_log

runner = CliRunner()


class EncoderAsked(Exception):
    """Raised by the spy: the command asked for an encoder (the test needs nothing more)."""


def commands_with_an_encoder_option() -> list[str]:
    out = []

    def walk(group, path: list[str]) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, [*path, name])
            elif any("--encoder" in getattr(p, "opts", []) for p in command.params):
                out.append(" ".join([*path, name]))

    walk(typer.main.get_command(app), [])
    return out


# one invocation per command that must reach the encoder ({d}: dataset folder, {log}: a decision log)
INVOCATIONS = {
    "encode": ["encode", "{d}", "--out", "{tmp}/x.npy"],
    "eval": ["eval", "-d", "{d}", "--routers", "knn", "--setting", "easy"],
    "scaling": ["scaling", "-d", "{d}", "--router", "knn", "--max-m", "3", "--samples", "2", "--out", "{tmp}/s.png"],
    "fit": ["fit", "-d", "{d}", "--router", "knn", "--out", "{tmp}/bundle"],
    "fit --logs": ["fit", "--logs", "{log}", "--router", "knn", "--out", "{tmp}/from-logs"],
    "debias": ["debias", "-d", "{d}", "--routers", "knn", "--setting", "easy"],
    "new-tasks": ["new-tasks", "-d", "{d}", "--routers", "knn"],
    "coldstart": ["coldstart", "-d", "{d}", "--routers", "knn", "--k", "0,5", "--max-folds", "1"],
    "tradeoff": ["tradeoff", "-d", "{d}", "--routers", "knn"],
    "ope": ["ope", "--logs", "{log}", "--routers", "knn"],
    "logs simulate": ["logs", "simulate", "-d", "{d}", "--n", "50", "--out", "{tmp}/l.jsonl"],
}


@pytest.fixture(scope="module")
def texts_only(tmp_path_factory):
    """(dataset folder with texts and prices but no embeddings, a decision log with prompt texts)."""
    rng = np.random.default_rng(0)
    n, names = 120, ["a", "b", "c", "d", "e", "f"]
    Y = (rng.random((n, len(names))) < np.linspace(0.2, 0.8, len(names))).astype(np.float32)
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "text": [f"question {i} about {i % 7}" for i in range(n)],
                            "task": [f"t{i % 3}" for i in range(n)]})
    llms = pd.DataFrame({"llm": names, "input_price_per_mtok": [0.1, 0.2, 0.4, 0.8, 1.6, 3.2],
                         "output_price_per_mtok": [0.1, 0.2, 0.4, 0.8, 1.6, 3.2]})
    data = RoutingDataset.from_wide(Y, prompts.prompt_id.tolist(), names, prompts=prompts, llms=llms)
    assert data.embeddings is None and data.has_text
    root = tmp_path_factory.mktemp("texts")
    folder = data.save(root / "ds")
    log = [{"decision_id": f"d{i}", "prompt_id": f"p{i}", "prompt_text": f"question {i} about {i % 7}", "chosen": "a",
            "candidates": names, "propensity": 1.0, "outcome": float(Y[i, 0]), "timestamp": 1.0 + i} for i in range(40)]
    return folder, write_decision_log(log, root / "log.jsonl")


def test_every_command_with_an_encoder_option_is_walked():
    assert set(commands_with_an_encoder_option()) == {name for name in INVOCATIONS if name != "fit --logs"}


@pytest.mark.parametrize("name", list(INVOCATIONS))
def test_the_default_encoder_is_the_one_constant(name, texts_only, tmp_path, monkeypatch):
    folder, log = texts_only
    asked: list[str] = []

    def spy(encoder=None, **kwargs):
        asked.append(canonical_name(encoder) if isinstance(encoder, str) else str(encoder))
        raise EncoderAsked(encoder)

    for module in (encoders_pkg, encoders_base, encoders_embed):
        monkeypatch.setattr(module, "get_encoder", spy)
    args = [a.replace("{d}", str(folder)).replace("{log}", str(log)).replace("{tmp}", str(tmp_path)) for a in INVOCATIONS[name]]
    result = runner.invoke(app, [*args, "--quiet"])
    assert asked, f"{name}: never asked for an encoder ({result.output!r}, {result.exception!r})"
    assert set(asked) <= {DEFAULT_ENCODER, "None"}, f"{name} asked for {asked}"  # None: get_encoder's own default
