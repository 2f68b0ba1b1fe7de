"""`recroute eval` and `recroute scaling` end to end through typer's CliRunner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recroute.cli.eval_cmd import split_router_list, with_references
from recroute.cli.main import app
from recroute.data.dataset import RoutingDataset

runner = CliRunner()
SHARED = Path(os.environ.get("RECROUTE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
ROW_KEYS = {"router", "setting", "m", "group", "mu_o", "v_r", "v_b", "e_p", "auc"}
GROUPS = {"all_strong", "all_weak", "strong_to_weak", "mean"}


def small_folder(tmp_path: Path, n_prompts: int = 240, n_llms: int = 10) -> Path:
    """A dataset folder (records, prompts with one benchmark and two tasks, 8-d embeddings)."""
    rng = np.random.default_rng(0)
    skill = np.linspace(0.15, 0.85, n_llms)
    Y = (rng.random((n_prompts, n_llms)) < skill).astype(np.float32)
    prompts = pd.DataFrame({"prompt_id": [f"q{i}" for i in range(n_prompts)],
                            "task": np.where(np.arange(n_prompts) % 2 == 0, "x", "y"), "benchmark": "gsm8k"})
    data = RoutingDataset.from_wide(Y, prompts.prompt_id.tolist(), [f"llm{j}" for j in range(n_llms)], prompts=prompts,
                                    name="small")
    data.set_embeddings(rng.normal(size=(n_prompts, 8)).astype(np.float32), "random")
    return data.save(tmp_path / "small")


def check_rows(rows: list[dict], routers: set[str], ms: set[int]) -> None:
    assert rows and all(set(r) == ROW_KEYS | {"shares"} for r in rows)
    assert {r["router"] for r in rows} == routers
    assert {r["m"] for r in rows} == ms and {r["group"] for r in rows} == GROUPS
    for r in rows:
        assert isinstance(r["mu_o"], float) and 0 <= r["mu_o"] <= 1
        assert r["e_p"] >= -1e-6 and r["v_b"] > 0
        if r["group"] == "mean":
            assert r["shares"] is None
        else:
            assert len(r["shares"]) == r["m"] and abs(sum(r["shares"].values()) - 1) < 1e-9


def test_router_list_parsing():
    assert split_router_list("random, r_o:p=0.5,random_state=1,knn,") == ["random", "r_o:p=0.5,random_state=1", "knn"]
    assert with_references(["knn"]) == ["random", "oracle", "knn"]
    assert with_references(["oracle", "knn"]) == ["random", "oracle", "knn"]


def test_eval_on_a_dataset_folder_writes_tidy_json(tmp_path):
    folder = small_folder(tmp_path)
    out, csv = tmp_path / "rows.json", tmp_path / "rows.csv"
    result = runner.invoke(app, ["eval", "--dataset", str(folder), "--routers", "knn,r_o:p=0.5,best_single",
                                 "--setting", "easy", "--json", str(out), "--csv", str(csv), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output == ""  # --quiet prints nothing
    rows = json.loads(out.read_text())
    check_rows(rows, {"random", "oracle", "knn", "r_o:p=0.5", "best_single"}, {3, 5})
    assert all(r["v_r"] == pytest.approx(r["mu_o"] / 0.92) for r in rows)  # gsm8k's reference score
    assert len(pd.read_csv(csv)) == len(rows)


def test_eval_prints_a_table(tmp_path):
    folder = small_folder(tmp_path, n_llms=8)
    result = runner.invoke(app, ["eval", "-d", str(folder), "--routers", "best_single", "--setting", "all", "--long"])
    assert result.exit_code == 0, result.output
    for word in ("mu_o", "V_R", "V_B", "E_p", "oracle", "random", "best_single"):
        assert word in result.output
    assert "no candidate pool large enough for setting(s) hard" in result.output  # 8 LLMs < 10


def test_eval_default_view_is_one_row_per_router_and_a_summary(tmp_path):
    folder = small_folder(tmp_path, n_llms=8)
    result = runner.invoke(app, ["eval", "-d", str(folder), "--routers", "best_single,knn,als", "--setting", "easy"],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for word in ("kind", "V_B", "m=3", "m=5", "E_p", "baseline", "recroute", "bound"):
        assert word in result.output
    assert "V_R" not in result.output and "AUC" not in result.output  # the compact view; --long has them
    text = " ".join(result.output.split())
    assert "Summary" in text and text.count("als (recroute) V_B") == 2 and text.count("knn (RouterEval baseline)") == 2


def test_router_presets():
    from recroute.cli.eval_cmd import BASELINE_ROUTERS, MAIN_ROUTERS

    assert split_router_list("baselines") == split_router_list(BASELINE_ROUTERS)
    main = split_router_list("main")
    assert main == split_router_list(MAIN_ROUTERS) and {"knn", "cluster", "als", "two_tower"} <= set(main)
    assert set(split_router_list(BASELINE_ROUTERS)) - {"mlp"} <= set(main)


def test_eval_on_a_routereval_pickle(tmp_path):
    pkl = SHARED / "routereval" / "llmrouter_nim_router_dataset.pkl"
    if not pkl.exists():
        pytest.skip(f"shared RouterEval fixture not found at {pkl} (set RECROUTE_SHARED)")
    out = tmp_path / "rows.json"
    result = runner.invoke(app, ["eval", "--routereval", str(pkl), "--benchmark", "mmlu_pro", "--routers", "knn",
                                 "--setting", "easy", "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    check_rows(rows, {"random", "oracle", "knn"}, {3, 5})
    knn = next(r for r in rows if r["router"] == "knn" and r["m"] == 3 and r["group"] == "mean")
    # recroute's kNN on this fixture (the same on every CPU); RouterEval's knn.py printed 0.5059, inside
    # the range [0.50376, 0.50594] that the order of tied neighbours allows (tests/eval/test_routereval_fixture.py)
    assert knn["mu_o"] == pytest.approx(0.5053959853477196, abs=1e-12)
    assert knn["v_r"] == pytest.approx(knn["mu_o"] / 0.637)


def test_eval_with_the_tfidf_encoder_on_real_prompts(tmp_path, monkeypatch):
    source = SHARED / "data" / "llmrouter_nim"
    if not source.exists():
        pytest.skip(f"shared data not found at {source} (set RECROUTE_SHARED)")
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "cache"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = RoutingDataset.load(source)
    small = data.subset(prompts=np.arange(0, data.n_prompts, 16))  # 382 prompts, every task
    folder = small.save(tmp_path / "nim_small")
    out = tmp_path / "rows.json"
    result = runner.invoke(app, ["eval", "-d", str(folder), "--routers", "knn", "--encoder", "tfidf",
                                 "--setting", "easy", "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    check_rows(rows, {"random", "oracle", "knn"}, {3, 5})
    assert all(r["v_r"] is None for r in rows)  # 14 benchmarks: no single reference score


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "no_such_dataset"], "no dataset 'no_such_dataset'"),
        (["--dataset", "{folder}", "--routers", "knn,nope"], "unknown router 'nope'"),
        (["--dataset", "{folder}", "--routers", "r_o:q=1"], "bad parameters"),
        (["--dataset", "{folder}", "--setting", "medium"], "unknown setting"),
        (["--routers", "knn"], "exactly one of --dataset"),
        (["--dataset", "{folder}", "--routereval", "{folder}/x.pkl"], "exactly one of --dataset"),
        (["--routereval", "{folder}/missing.pkl"], "not found"),
        (["--routereval", "{folder}/records.parquet"], "not a readable pickle"),
        (["--dataset", "{folder}", "--monte-carlo", "-5"], "--monte-carlo"),
    ],
)
def test_bad_input_is_one_clean_line_and_exit_2(tmp_path, args, message):
    folder = small_folder(tmp_path)
    args = [a.replace("{folder}", str(folder)) for a in args]
    result = runner.invoke(app, ["eval", *args, "--quiet"])
    assert result.exit_code == 2, result.output
    text = result.output.replace("\n", "")  # rich wraps long lines at the terminal width
    assert message in text and "Traceback" not in text
    assert text.startswith("error:")


def test_eval_without_embeddings_asks_for_an_encoder(tmp_path):
    folder = small_folder(tmp_path)
    (folder / "embeddings.npy").unlink()
    result = runner.invoke(app, ["eval", "-d", str(folder), "--routers", "knn", "--quiet"])
    assert result.exit_code == 2 and "need prompt embeddings" in result.output
    result = runner.invoke(app, ["eval", "-d", str(folder), "--routers", "best_single", "--quiet"])
    assert result.exit_code == 0, result.output  # feature-free routers need none


def test_scaling_command_writes_figure_and_rows(tmp_path):
    folder = small_folder(tmp_path)
    fig, out = tmp_path / "scaling.png", tmp_path / "scaling.json"
    result = runner.invoke(app, ["scaling", "--dataset", str(folder), "--max-m", "5", "--out", str(fig),
                                 "--router", "knn,best_single", "--samples", "10", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert fig.read_bytes()[:4] == b"\x89PNG"
    rows = json.loads(out.read_text())
    assert {r["curve"] for r in rows} == {"r_o", "knn", "best_single"} and {r["m"] for r in rows} == {2, 3, 4, 5}
    assert "oracle" in result.output and "knn" in result.output
    bad = runner.invoke(app, ["scaling", "--dataset", str(folder), "--max-m", "50", "--out", str(fig), "--quiet"])
    assert bad.exit_code == 2 and "max_m" in bad.output
