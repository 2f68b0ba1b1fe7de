"""The same `recroute eval --json` rows, to the last digit, for any backend, thread count and run.

Every stochastic step draws from the one seed: the r_o / random Monte Carlo (``--monte-carlo``), k-means
(cluster, soft_cluster), torch initialisation and shuffles (MLPR, two-tower), the bagged ensemble's
members, ALS's initial factors. A router whose numbers moved with the cores (k-means summed its
centres per thread) or with the process would show here.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recroute.cli.main import app
from recroute.data.synthetic import make_synthetic

runner = CliRunner()
ROUTERS = ("random,r_o:p=0.5,knn,cluster,soft_cluster:n_clusters=12,mlp:epochs=15,two_tower:dim=16,epochs=15,"
           "ensemble:members=two_tower:dim=8;epochs=8,n_seeds=2,als:factors=8,iterations=8")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    data = make_synthetic(n_prompts=400, n_llms=12, embedding_dim=16, random_state=0)
    return data.save(tmp_path_factory.mktemp("det") / "ds")


def eval_rows(folder, tmp_path, name: str, *extra: str) -> list[dict]:
    out = tmp_path / f"{name}.json"
    args = ["eval", "-d", str(folder), "--routers", ROUTERS, "--setting", "easy", "--monte-carlo", "50",
            "--json", str(out), "--quiet", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory):
    return eval_rows(folder, tmp_path_factory.mktemp("ref"), "one_thread", "--threads", "1")


def test_rows_cover_every_router(reference):
    routers = {row["router"] for row in reference}
    assert len(routers) == 10 and len(reference) == 10 * 2 * 4  # 2 pool sizes × (3 groups + mean)


def test_two_threads_give_the_same_rows(folder, tmp_path, reference):
    assert eval_rows(folder, tmp_path, "two_threads", "--threads", "2") == reference


def test_a_second_run_gives_the_same_rows(folder, tmp_path, reference):
    assert eval_rows(folder, tmp_path, "again", "--threads", "1") == reference


def test_the_process_backend_gives_the_same_rows(folder, tmp_path, reference):
    assert eval_rows(folder, tmp_path, "process", "--backend", "process") == reference


def test_another_seed_gives_other_rows(folder, tmp_path, reference):
    """The rows follow the seed (RouterEval's split and draws), so the equalities above are not vacuous."""
    assert eval_rows(folder, tmp_path, "seed7", "--threads", "1", "--seed", "7") != reference
