"""Thread settings: arguments over per-library variables over RECROUTE_THREADS over the cores."""

from __future__ import annotations

import pytest

from recroute.encoders.base import default_n_threads
from recroute.encoders.minilm import MiniLMEncoder
from recroute.encoders.onnx import OnnxMiniLMEncoder
from recroute.threads import ThreadSettings, apply_threads, available_cores, onnx_threads, resolve_threads


def test_default_is_the_cores_at_most_4_for_encoders():
    cores = available_cores()
    assert resolve_threads(environ={}) == ThreadSettings(min(cores, 4), min(cores, 4), cores)
    serving = max(1, min(cores - 1, 4))  # a serving process leaves a core to its event loop
    assert resolve_threads(serving=True, environ={}) == ThreadSettings(serving, serving, cores)
    assert resolve_threads(serving=True, environ={"RECROUTE_THREADS": "2"}) == ThreadSettings(2, 2, 2)


def test_precedence_argument_then_library_variable_then_shared_variable():
    env = {"RECROUTE_THREADS": "3", "RECROUTE_TORCH_THREADS": "1", "RECROUTE_FAISS_THREADS": " 2 "}
    assert resolve_threads(environ=env) == ThreadSettings(torch=1, onnx=3, faiss=2)
    assert resolve_threads(4, environ=env) == ThreadSettings(4, 4, 4)
    assert resolve_threads(4, onnx=1, environ=env) == ThreadSettings(4, 1, 4)
    assert resolve_threads(torch=2, environ={"RECROUTE_ORT_THREADS": "5"}).as_dict()["onnx"] == 5


@pytest.mark.parametrize("kwargs, env, message", [
    ({"threads": 0}, {}, "threads must be a positive integer"),
    ({"threads": True}, {}, "threads"),
    ({"torch": -1}, {}, "torch threads"),
    ({}, {"RECROUTE_THREADS": "two"}, "RECROUTE_THREADS"),
    ({}, {"RECROUTE_ORT_THREADS": "0"}, "RECROUTE_ORT_THREADS"),
    ({}, {"RECROUTE_FAISS_THREADS": "1.5"}, "RECROUTE_FAISS_THREADS"),
])
def test_bad_values_name_their_source(kwargs, env, message):
    with pytest.raises(ValueError, match=message):
        resolve_threads(environ=env, **kwargs)


def test_apply_sets_torch_and_faiss_and_remembers_onnx(monkeypatch):
    import faiss
    import torch

    monkeypatch.setattr("recroute.threads._applied", None)  # restored after the test
    before = (torch.get_num_threads(), faiss.omp_get_max_threads())
    try:
        applied = apply_threads(ThreadSettings(torch=1, onnx=2, faiss=1), load=True)
        assert applied.onnx == 2 and onnx_threads() == 2
        assert default_n_threads("onnx") == 2 and default_n_threads("torch") == 1  # encoders read them
        assert OnnxMiniLMEncoder().n_threads == 2 and MiniLMEncoder().n_threads == 1
        assert torch.get_num_threads() == 1 and faiss.omp_get_max_threads() == 1
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


def test_import_sets_a_passive_openmp_wait_policy_unless_one_is_set():
    """Spinning OpenMP threads made 2-thread FAISS searches slower than 1 on a busy machine; the user's
    own setting wins."""
    import os
    import subprocess
    import sys

    code = "import os, recroute; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    unset = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    given = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                           capture_output=True, text=True, check=True)
    assert (unset.stdout.strip(), given.stdout.strip()) == ("PASSIVE", "ACTIVE")
