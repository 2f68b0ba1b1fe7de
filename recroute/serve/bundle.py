"""A routing bundle: the encoder, the fitted router and the LLM names in one checksummed folder.

Layout (format version 1)::

    DIR/manifest.json   {"format": "recroute-bundle", "format_version": 1,
                         "files": {relative path: {"sha256": hex, "bytes": n}}}   (every other file)
    DIR/bundle.json     encoder (type, name, dim) or null, router (name, n_features_in), llms, versions,
                        prices (per-LLM prices the router was fitted with, recroute.data.costs.Prices) or null,
                        costs ("prices": cost_weight / max_cost use the prices; "predicted": the router's
                        predict_costs(X), for a router that predicts costs such as graphrouter; absent = prices)
    DIR/encoder/        the encoder's own save (MiniLM: encoder.json; TF-IDF: encoder.json + arrays.npz)
    DIR/router/         Router.save: router.json + arrays.npz (+ index.faiss for kNN)

Saved atomically (a temporary folder renamed into place); loading executes no code (JSON, npz with
``allow_pickle=False``, FAISS index files) and raises :class:`SavedArtifactError` for a missing,
truncated, modified or unexpected file, an unknown format version, or an encoder that does not fit
the router. A bundle without an encoder routes precomputed embeddings only.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recroute.errors import DataError, SavedArtifactError

BUNDLE_FORMAT = "recroute-bundle"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
BUNDLE_FILE = "bundle.json"
ROUTER_DIR = "router"
ENCODER_DIR = "encoder"
COST_SOURCES = ("prices", "predicted")  # where a bundle's expected costs come from


@dataclass(frozen=True)
class RouteDecision:
    """One prompt's route: the chosen LLM and its score, and the top-k (name, score) pairs best first."""

    llm: str
    score: float
    top_k: tuple[tuple[str, float], ...]
    propensity: float | None = None  # set when a stochastic policy chose (recroute.feedback.policies)

    def to_dict(self) -> dict[str, Any]:
        """{"llm", "score", "top_k": [{"llm", "score"}, ...]} (+ "propensity" under a policy); a non-finite
        score becomes None."""
        out = {"llm": self.llm, "score": _finite(self.score),
               "top_k": [{"llm": name, "score": _finite(s)} for name, s in self.top_k]}
        if self.propensity is not None:
            out["propensity"] = float(self.propensity)
        return out


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def encoder_kind(name: str | None) -> str | None:
    """"minilm", "tfidf" or None (no encoder) for an encoder name, "tfidf-svd-256" included."""
    if name is None:
        return None
    from recroute.encoders.base import canonical_name

    key = canonical_name(name)
    if key is None and name.strip().lower().startswith("tfidf-svd-"):
        return "tfidf"
    return key or name


class RoutingBundle:
    """A fitted router with the encoder that makes its prompt features. Build, save, load, route.

    ``route_texts(texts, k, candidates)`` encodes then routes; ``route_embeddings(X, k, candidates)``
    routes precomputed float32 (n, d) features. Both return one :class:`RouteDecision` per prompt.
    """

    def __init__(self, router, encoder=None, prices=None, costs: str = "prices") -> None:
        self.router = router
        self.encoder = encoder
        self.prices = prices  # recroute.data.costs.Prices for the router's LLMs, or None (no cost routing)
        self.costs = costs  # "prices" or "predicted" (the router's predict_costs): see COST_SOURCES
        self.path: Path | None = None  # the folder it was loaded from (load), else None
        self.checksum: str | None = None  # sha256 of its manifest when loaded (names every file's sha256)
        self._encode_lock = threading.Lock()  # tokenizers and torch models are not re-entrant

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, router, encoder=None, prices=None, costs: str = "prices") -> "RoutingBundle":
        """A bundle of a fitted router and the (fitted) encoder its features came from.

        ``encoder``: an encoder object or name ("minilm"); None for a router that needs no prompt
        features, or to route precomputed embeddings only. Its dim must equal the router's
        ``n_features_in_``. ``prices``: a :class:`~recroute.data.costs.Prices` covering the router's
        LLMs (``RoutingDataset.prices()``), kept for ``cost_weight`` / ``max_cost`` routing. ``costs``: where
        that routing's expected costs come from: "prices" (the default), or "predicted", the router's own
        ``predict_costs(X)`` per prompt and LLM (a router fitted with costs, e.g. graphrouter on priced data).
        """
        from recroute.encoders.base import get_encoder

        router._check_fitted()
        if encoder is not None:
            encoder = get_encoder(encoder)
            if getattr(encoder, "is_fitted", True) is False:
                raise DataError(f"encoder {encoder.name!r} is not fitted: fit it on the training texts first")
            if not callable(getattr(encoder, "save", None)):
                raise DataError(f"encoder {encoder.name!r} cannot be saved (no save method): use minilm or tfidf")
            _check_dims(router, encoder, "")
        if prices is not None:
            prices = prices.subset([str(n) for n in router.llm_names_])
            prices.require_all("bundle prices")
        check_cost_source(router, costs, "")
        return cls(router, encoder, prices, costs)

    # ------------------------------------------------------------------ identity
    @property
    def llm_names(self) -> list[str]:
        return [str(n) for n in self.router.llm_names_]

    @property
    def encoder_name(self) -> str | None:
        return None if self.encoder is None else str(self.encoder.name)

    @property
    def n_features(self) -> int:
        """Width of the prompt features the router takes (0 for a feature-free router)."""
        return int(getattr(self.router, "n_features_in_", 0)) if self.router.needs_features else 0

    def describe(self) -> dict[str, Any]:
        """The bundle.json document (JSON-able)."""
        from recroute import __version__

        enc = None
        if self.encoder is not None:
            spec = self.encoder.spec() if callable(getattr(self.encoder, "spec", None)) else {}
            enc = {"type": spec.get("type", encoder_kind(self.encoder.name)), "name": self.encoder.name,
                   "dim": int(self.encoder.dim)}
        return {
            "format": BUNDLE_FORMAT,
            "format_version": FORMAT_VERSION,
            "recroute_version": __version__,
            "encoder": enc,
            "router": {"name": self.router.name, "spec": _spec(self.router),
                       "needs_features": bool(self.router.needs_features), "n_features_in": self.n_features},
            "llms": self.llm_names,
            "prices": None if self.prices is None else self.prices.to_dict(),
            "costs": self.costs,
        }

    def __repr__(self) -> str:
        enc = self.encoder_name or "no encoder"
        return f"RoutingBundle({self.router.name!r}, {len(self.llm_names)} LLMs, {enc})"

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the bundle folder atomically: encoder, router, bundle.json, then manifest.json."""
        from recroute.atomic import atomic_dir

        path = Path(path)
        with atomic_dir(path) as tmp:
            if self.encoder is not None:
                self.encoder.save(tmp / ENCODER_DIR)
            self.router.save(tmp / ROUTER_DIR)
            (tmp / BUNDLE_FILE).write_text(json.dumps(self.describe(), indent=1))
            files = {rel: {"sha256": _sha256(tmp / rel), "bytes": (tmp / rel).stat().st_size}
                     for rel in _list_files(tmp) if rel != MANIFEST_FILE}
            manifest = {"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION, "files": files}
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, encoder: str | None = None) -> "RoutingBundle":
        """Read a bundle folder; every file is checked against the manifest before it is used.

        ``encoder``: the encoder name the caller expects ("minilm", "tfidf"); a bundle holding
        another encoder raises SavedArtifactError.
        """
        from recroute.encoders.base import load_encoder
        from recroute.routers.base import Router

        path = Path(path)
        checksum = bundle_checksum(path)
        meta = _read_json(path / BUNDLE_FILE)
        enc_meta = meta.get("encoder")
        if encoder is not None and encoder_kind(encoder) != encoder_kind((enc_meta or {}).get("name")):
            held = (enc_meta or {}).get("name") or "no encoder"
            raise SavedArtifactError(f"{path}: the bundle holds {held}, not the requested encoder {encoder!r}")
        enc = None
        if enc_meta is not None:
            try:
                enc = load_encoder(path / ENCODER_DIR)
            except (KeyError, TypeError, ValueError) as exc:
                raise SavedArtifactError(f"{path}: cannot load the encoder ({exc})") from None
            if enc.name != enc_meta.get("name") or int(enc.dim) != enc_meta.get("dim"):
                raise SavedArtifactError(
                    f"{path / BUNDLE_FILE}: records encoder {enc_meta.get('name')!r} of dim {enc_meta.get('dim')!r} "
                    f"but {ENCODER_DIR}/ holds {enc.name!r} of dim {enc.dim}"
                )
        router = Router.load(path / ROUTER_DIR)
        if [str(n) for n in router.llm_names_] != meta.get("llms"):
            raise SavedArtifactError(f"{path / BUNDLE_FILE}: its LLM names differ from the router's")
        if enc is not None:
            _check_dims(router, enc, f"{path}: ")
        prices = None
        if meta.get("prices") is not None:
            from recroute.data.costs import Prices

            try:
                prices = Prices.from_dict(meta["prices"], f"{path / BUNDLE_FILE}")
            except DataError as exc:
                raise SavedArtifactError(str(exc)) from None
            if prices.llms != meta.get("llms"):
                raise SavedArtifactError(f"{path / BUNDLE_FILE}: its prices name other LLMs than the router")
        costs = meta.get("costs", "prices")
        try:
            check_cost_source(router, costs, f"{path / BUNDLE_FILE}: ")
        except DataError as exc:
            raise SavedArtifactError(str(exc)) from None
        bundle = cls(router, enc, prices, costs)
        bundle.path, bundle.checksum = path, checksum
        return bundle

    # ------------------------------------------------------------------ routing
    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """float32 (len(texts), dim) prompt features from the bundle's encoder."""
        from recroute.encoders.base import check_texts

        texts = check_texts(texts, "prompts")
        if self.encoder is None:
            raise DataError("this bundle has no encoder: route precomputed embeddings (route_embeddings / --embeddings)")
        with self._encode_lock:
            return np.asarray(self.encoder.encode(texts, batch_size=batch_size), dtype=np.float32)

    def route_texts(
        self, texts: Sequence[str], k: int = 1, candidates: Sequence[str] | None = None,
        batch_size: int | None = None, cost_weight: float | None = None, max_cost: float | None = None,
        policy=None, rng=None,
    ) -> list[RouteDecision]:
        """One decision per prompt text (encoded with the bundle's encoder), in input order."""
        from recroute.encoders.base import check_texts

        texts = check_texts(texts, "prompts")
        X = self.encode(texts, batch_size) if self.router.needs_features else None
        tokens = self.prompt_tokens(texts) if (cost_weight is not None or max_cost is not None) else None
        return self.route_embeddings(X, k, candidates, n=len(texts), cost_weight=cost_weight, max_cost=max_cost,
                                     prompt_tokens=tokens, policy=policy, rng=rng)

    def route_embeddings(
        self, X: np.ndarray | None, k: int = 1, candidates: Sequence[str] | None = None, n: int | None = None,
        cost_weight: float | None = None, max_cost: float | None = None, prompt_tokens: np.ndarray | None = None,
        policy=None, rng=None,
    ) -> list[RouteDecision]:
        """One decision per row of precomputed features X (n, d); X may be None (give n) for a
        router that needs no features. Under a ``policy`` each decision carries its propensity."""
        got = self.route_arrays(X, k, candidates, n, cost_weight=cost_weight, max_cost=max_cost,
                                prompt_tokens=prompt_tokens, policy=policy, rng=rng)
        return decisions(*got, self.llm_names) if policy is None else decisions(got[0], got[1], self.llm_names, got[2])

    @property
    def has_costs(self) -> bool:
        """Whether cost_weight / max_cost routing works: prices, or a router that predicts costs."""
        return self.costs == "predicted" or self.prices is not None

    def prompt_tokens(self, texts: Sequence[str]) -> np.ndarray | None:
        """float64 (n,) prompt token counts when the bundle's prices are per token (and used), else None."""
        if self.costs == "predicted" or self.prices is None or not self.prices.token_based:
            return None
        from recroute.data.costs import count_prompt_tokens

        return count_prompt_tokens(list(texts))

    def expected_costs(self, n: int, prompt_tokens: np.ndarray | None = None, X: np.ndarray | None = None) -> np.ndarray:
        """float64 (n, n_llms) expected cost per prompt and LLM: with ``costs="predicted"`` the router's
        ``predict_costs(X)`` (X (n, d) the prompts' features), else from the bundle's prices; without token
        counts a per-token price assumes ``recroute.data.costs.DEFAULT_PROMPT_TOKENS`` per prompt."""
        if self.costs == "predicted":
            if X is None and self.router.needs_features:
                raise DataError("this bundle's costs are predicted from the prompts' features: give X (n, d)")
            C = np.asarray(self.router.predict_costs(X), dtype=np.float64)
            if C.shape != (int(n), len(self.llm_names)):
                raise DataError(f"predicted costs of shape {C.shape}; expected {(int(n), len(self.llm_names))}")
            return C
        if self.prices is None:
            raise DataError("this bundle was fitted without prices: cost_weight / max_cost need a dataset with "
                            "prices or per-cell costs (llms.parquet price columns, records.parquet 'cost')")
        return self.prices.expected(prompt_tokens, n=n)

    def route_arrays(
        self, X: np.ndarray | None, k: int = 1, candidates: Sequence[str] | None = None, n: int | None = None,
        cost_weight: float | None = None, max_cost: float | None = None, prompt_tokens: np.ndarray | None = None,
        policy=None, rng=None,
    ):
        """(llm_idx int64 (n, k), scores float32 (n, k)): the router's top-k, best first.

        One decision step for every router: router scores -> utility ``score - cost_weight · expected cost``
        (``cost_weight`` lambda >= 0, recroute.cost.decide) -> candidates narrowed by ``max_cost`` (only LLMs
        whose expected cost is at most this; ``prompt_tokens`` (n,) for per-token prices) -> greedy top-k, or
        with ``policy`` (a spec such as "epsilon_greedy:epsilon=0.2", or a Policy) one LLM per prompt drawn
        from the policy over those values (``rng``: a numpy Generator or seed); the result is then
        (llm_idx (n, 1), scores (n, 1), propensity float64 (n,)) and k must be 1.
        """
        if X is None and n is None:
            raise DataError("give prompt features X (n, d) or the number of prompts n")
        if X is not None and not self.router.needs_features:
            X, n = None, len(X)
        k = self.check_choice(k, candidates)
        if candidates is not None:
            candidates = list(candidates)
        if policy is not None:
            from recroute.feedback.policies import parse_policy

            policy = parse_policy(policy)
            if k != 1:
                raise DataError(f"a routing policy ({policy.spec}) chooses one LLM per prompt: k must be 1, got {k}")
        n = len(X) if X is not None else int(n)
        if n == 0:
            empty = np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
            return empty if policy is None else (*empty, np.zeros(0))
        if policy is None and cost_weight is None and max_cost is None:
            return self.router.route(X, k=k, candidates=candidates, n=n)
        from recroute.cost.decide import cost_aware_scores, greedy_top_k

        allowed = self.router._candidate_mask(candidates)
        scores = self.router.score(X, n) if candidates is None else self.router.score_among(X, allowed, n)
        costs = None if cost_weight is None and max_cost is None else self.expected_costs(n, prompt_tokens, X)
        values, mask = cost_aware_scores(scores, costs, cost_weight, max_cost, allowed, self.llm_names)
        if policy is None:
            idx = greedy_top_k(values, mask, k)
            return idx, np.take_along_axis(scores, idx, axis=1)
        chosen, propensity = policy.choose(values, mask, rng)
        idx = chosen[:, None]
        return idx, np.take_along_axis(scores, idx, axis=1), propensity

    def explain(self, texts: Sequence[str], candidates: Sequence[str] | None = None,
                cost_weight: float | None = None, max_cost: float | None = None, training=None,
                batch_size: int | None = None) -> list[dict[str, Any]]:
        """One explanation per prompt text (recroute.audit.explain): every candidate's P(correct) with its
        uncertainty, cost and utility, the margin to the runner-up, the router family's evidence, and the
        counterfactuals. ``training``: the RoutingDataset the bundle was fitted on (evidence texts)."""
        from recroute.encoders.base import check_texts

        texts = check_texts(texts, "prompts")
        X = self.encode(texts, batch_size) if self.router.needs_features else None
        tokens = self.prompt_tokens(texts)
        return self.explain_embeddings(X, candidates, n=len(texts), cost_weight=cost_weight, max_cost=max_cost,
                                       prompt_tokens=tokens, training=training)

    def explain_embeddings(self, X: np.ndarray | None, candidates: Sequence[str] | None = None, n: int | None = None,
                           cost_weight: float | None = None, max_cost: float | None = None,
                           prompt_tokens: np.ndarray | None = None, training=None) -> list[dict[str, Any]]:
        """:meth:`explain` for precomputed features X (n, d) (None and ``n`` for a feature-free router)."""
        from recroute.audit.explain import explain_arrays

        if X is not None and not self.router.needs_features:
            X, n = None, len(X)
        n = len(X) if X is not None else n
        if n is None:
            raise DataError("give prompt features X (n, d) or the number of prompts n")
        self.check_choice(1, candidates)
        costs = None
        if self.has_costs:
            costs = self.expected_costs(int(n), prompt_tokens, X)
        elif cost_weight is not None or max_cost is not None:
            self.expected_costs(int(n))  # the DataError naming the missing prices
        return explain_arrays(self.router, X, n=n, candidates=candidates, costs=costs, cost_weight=cost_weight,
                              max_cost=max_cost, training=training)

    def check_choice(self, k, candidates: Sequence[str] | None = None) -> int:
        """``k`` as an int after checking it and the candidate names (DataError naming what is wrong)."""
        k = _check_k(k)
        allowed = self.router._candidate_mask(None if candidates is None else list(candidates))
        if k > int(allowed.sum()):
            raise DataError(f"k={k} is more than the {int(allowed.sum())} candidate LLM(s)")
        return k


def decisions(idx: np.ndarray, scores: np.ndarray, names: Sequence[str],
              propensity: np.ndarray | None = None) -> list[RouteDecision]:
    """RouteDecision per row of (llm_idx (n, k), scores (n, k)) (+ propensity (n,) under a policy)."""
    out = []
    props = [None] * len(idx) if propensity is None else [float(p) for p in propensity]
    for row_idx, row_scores, prop in zip(idx.tolist(), scores.tolist(), props):
        pairs = tuple((names[j], s) for j, s in zip(row_idx, row_scores))
        out.append(RouteDecision(pairs[0][0], pairs[0][1], pairs, prop))
    return out


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DataError(f"k must be an integer; got {k!r}")
    if k < 1:
        raise DataError(f"k must be at least 1; got {k}")
    return int(k)


def _check_dims(router, encoder, where: str) -> None:
    if router.needs_features and int(router.n_features_in_) != int(encoder.dim):
        raise (SavedArtifactError if where else DataError)(
            f"{where}encoder {encoder.name!r} makes {encoder.dim}-d features but the router was fitted on "
            f"{router.n_features_in_}-d features (another encoder?)"
        )


def _spec(router) -> str:
    """The router as a registry spec (``knn:k=5,metric=cosine,...``; a conservative router: its tau, the
    inner routers being in its folder)."""
    params = router._saved_params()
    return router.name + (":" + ",".join(f"{k}={v!r}" for k, v in params.items()) if params else "")


# ---------------------------------------------------------------------- integrity
def verify(path: Path) -> dict:
    """Check every file of a bundle against its manifest; returns the manifest.

    Raises SavedArtifactError naming the first missing, truncated, modified or unexpected file.
    """
    path = Path(path)
    if not path.is_dir():
        raise SavedArtifactError(f"{path}: no routing bundle there (not a folder)")
    manifest = _read_json(path / MANIFEST_FILE)
    if manifest.get("format") != BUNDLE_FORMAT:
        raise SavedArtifactError(f"{path / MANIFEST_FILE}: not a recroute routing bundle (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise SavedArtifactError(
            f"{path / MANIFEST_FILE}: bundle format version {version!r}; this recroute reads version {FORMAT_VERSION}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or BUNDLE_FILE not in files:
        raise SavedArtifactError(f"{path / MANIFEST_FILE}: no file list (or no {BUNDLE_FILE} in it)")
    for rel, entry in files.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not isinstance(entry, dict):
            raise SavedArtifactError(f"{path / MANIFEST_FILE}: bad entry {rel!r}")
        file = path / rel
        if not file.is_file():
            raise SavedArtifactError(f"{path}: missing file {rel}")
        size = file.stat().st_size
        if size != entry.get("bytes"):
            raise SavedArtifactError(f"{path}: {rel} has {size} bytes, the manifest says {entry.get('bytes')} (truncated?)")
        if _sha256(file) != entry.get("sha256"):
            raise SavedArtifactError(f"{path}: {rel} does not match its sha256 in the manifest (modified)")
    extra = sorted(set(_list_files(path)) - set(files) - {MANIFEST_FILE})
    if extra:
        raise SavedArtifactError(f"{path}: file(s) not in the manifest: {', '.join(extra[:5])}")
    return manifest


def bundle_checksum(path: Path) -> str:
    """The bundle's identity after :func:`verify`: sha256 hex of its manifest (which holds the sha256 of
    every other file), so two bundles with the same checksum hold the same bytes."""
    verify(path)
    return _sha256(Path(path) / MANIFEST_FILE)


def _read_json(file: Path) -> dict:
    if not file.is_file():
        raise SavedArtifactError(f"{file.parent}: missing {file.name} (not a routing bundle?)")
    try:
        doc = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SavedArtifactError(f"{file}: corrupt JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SavedArtifactError(f"{file}: expected a JSON object")
    return doc


def _list_files(root: Path) -> list[str]:
    """Relative POSIX paths of every file under root, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_cost_source(router, costs: str, where: str) -> None:
    """DataError unless ``costs`` is one of COST_SOURCES and, for "predicted", the router predicts costs."""
    if costs not in COST_SOURCES:
        raise DataError(f"{where}costs must be one of {', '.join(COST_SOURCES)}; got {costs!r}")
    if costs == "predicted" and not getattr(router, "predicts_costs", False):
        raise DataError(f"{where}costs='predicted' needs a router that predicts costs (graphrouter fitted on data "
                        f"with prices or per-cell costs); {router.name!r} does not")
