"""KNNRouter's default nprobe / efSearch are the ones the recorded real-embedding sweep chose
(benchmarks/results/knn_recall_real.json: the smallest reaching recall@5 >= 0.95 for every encoder)."""

from __future__ import annotations

import json
from pathlib import Path

from recroute.routers.knn import KNNRouter

RECORD = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "knn_recall_real.json"


def test_defaults_match_the_recorded_choice():
    record = json.loads(RECORD.read_text())
    choice = record["choice"]
    assert choice["recall_goal"] == 0.95 and not choice["unreached_by"]
    router = KNNRouter()
    assert (router.nprobe, router.ef_search) == (choice["nprobe"], choice["ef_search"])
    for row in record["rows"]:  # the choice reaches the goal on every encoder's own vectors ...
        ivf = {v["nprobe"]: v["recall"] for v in row["ivf"]}
        hnsw = {v["ef_search"]: v["recall"] for v in row["hnsw"]}
        assert ivf[choice["nprobe"]] >= 0.95 and hnsw[choice["ef_search"]] >= 0.95, row["encoder"]
    # ... and is the smallest swept value that does so for all of them
    assert all(min(v["recall"] for r in record["rows"] for v in r["ivf"] if v["nprobe"] == p) < 0.95
               for p in {v["nprobe"] for v in record["rows"][0]["ivf"]} if p < choice["nprobe"])
    assert all(min(v["recall"] for r in record["rows"] for v in r["hnsw"] if v["ef_search"] == e) < 0.95
               for e in {v["ef_search"] for v in record["rows"][0]["hnsw"]} if e < choice["ef_search"])
