"""Evaluation backends: the process pool and Ray give the serial runner's rows, in the same order."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from recroute.errors import DataError
from recroute.eval.backends import map_work
from recroute.eval.protocol import evaluate_dataset

ROUTERS = ["random", "best_single", "oracle", "r_o:p=0.5", "knn", "linear", "cluster"]
TIMINGS = ["fit_seconds", "route_seconds"]


def _square_plus(shared, item):
    return item * item + shared


def _fail_on_three(shared, item):
    if item == 3:
        raise KeyError("item three")
    return item


@pytest.fixture(scope="module")
def tiny():
    from recroute.data.synthetic import make_synthetic

    return make_synthetic(n_prompts=300, n_llms=12, embedding_dim=8, random_state=0)


@pytest.fixture(scope="module")
def serial_rows(tiny):
    return evaluate_dataset(tiny, ROUTERS, settings=("easy",))


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns=TIMINGS), b.drop(columns=TIMINGS))


def test_map_work_keeps_item_order_on_every_backend():
    assert map_work(_square_plus, range(6), 1) == [1, 2, 5, 10, 17, 26]
    assert map_work(_square_plus, range(6), 1, backend="process", n_workers=2) == [1, 2, 5, 10, 17, 26]
    assert map_work(_square_plus, [], 1, backend="process") == []


def test_map_work_raises_the_items_own_error():
    with pytest.raises(KeyError, match="item three"):
        map_work(_fail_on_three, range(6), None, backend="process", n_workers=2)
    with pytest.raises(DataError, match="unknown backend 'threads'"):
        map_work(_square_plus, range(2), 0, backend="threads")


def test_process_backend_gives_the_serial_rows(tiny, serial_rows):
    rows = evaluate_dataset(tiny, ROUTERS, settings=("easy",), backend="process", n_workers=2)
    same_rows(serial_rows, rows)


def test_a_failing_group_is_named_on_the_process_backend(tiny):
    with pytest.raises(Exception) as info:
        evaluate_dataset(tiny, ["knn:k=0"], settings=("easy",), backend="process", n_workers=2)
    assert "k must be at least 1" in str(info.value)
    assert any("while evaluating router 'knn:k=0'" in note for note in getattr(info.value, "__notes__", []))


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the ray backend needs ray (pip install 'recroute[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_backend_gives_the_serial_rows(tiny, serial_rows, local_ray):
    rows = evaluate_dataset(tiny, ROUTERS, settings=("easy",), backend="ray")
    same_rows(serial_rows, rows)
    assert local_ray.is_initialized()  # a Ray instance the caller started is left running


def test_ray_backend_raises_the_groups_own_error(tiny, local_ray):
    with pytest.raises(ValueError, match="k must be at least 1"):
        evaluate_dataset(tiny, ["knn:k=0"], settings=("easy",), backend="ray")


def test_eval_cli_backend_option(tmp_path, tiny):
    import json

    from recroute.cli.main import app

    runner = CliRunner()
    folder = tiny.save(tmp_path / "tiny")
    common = ["eval", "--dataset", str(folder), "--routers", "knn,best_single", "--setting", "easy", "-q"]
    serial = runner.invoke(app, [*common, "--json", str(tmp_path / "s.json")])
    process = runner.invoke(app, [*common, "--backend", "process", "--json", str(tmp_path / "p.json")])
    assert serial.exit_code == 0 and process.exit_code == 0, serial.output + process.output
    drop = lambda rows: [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]  # noqa: E731
    assert drop(json.loads((tmp_path / "s.json").read_text())) == drop(json.loads((tmp_path / "p.json").read_text()))
    bad = runner.invoke(app, [*common, "--backend", "threads"])
    assert bad.exit_code == 2 and "unknown backend 'threads'" in bad.stderr
