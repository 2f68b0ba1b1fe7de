"""PRknn (RouterEval's kNN router) over a FAISS index.

The predicted score of each LLM is the mean training score of the prompt's k nearest training
prompts; the route is the argmax (first on ties) and the selection distribution for E_p is the
softmax of the predicted scores, as in RouterEval's knn.py (sklearn ``NearestNeighbors``, cosine,
brute force).

Neighbour sets follow one tie rule that no CPU changes: **among training prompts at equal distance
(within ``TIE_TOL``) the lower training position wins.** Precisely, with t the k-th smallest
distance of a query, every training prompt nearer than t - TIE_TOL is a neighbour, and the remaining
places go to the prompts within TIE_TOL of t in ascending training position (:func:`choose_neighbours`).
FAISS returns k + 1 neighbours; only where the k-th and (k+1)-th are within ``TIE_TOL`` of each other
(duplicate or near-duplicate training prompts, about 2 % of rows on RouterEval-style data) is the full
distance row computed and the rule applied to it; elsewhere the k nearest are unambiguous. The rule is
built from explicit masks and stable orders, never from ``argpartition``'s order of tied items, which
differs between CPUs (AVX2 and AVX-512 kernels). sklearn's brute-force ``NearestNeighbors`` (what
RouterEval's knn.py calls) resolves such ties by its partition kernel, so RouterEval's printed kNN
numbers move with the CPU they ran on; recroute's do not (docs/routers.md, "kNN ties").

Index choices (``index``): "flat" (exact; the default, RouterEval's numbers), "ivf" (inverted lists:
``nlist`` k-means cells, ``nprobe`` of them searched per query) and "hnsw" (a graph with ``hnsw_m``
links per node, ``ef_construction`` / ``ef_search`` candidate lists). Approximate indexes trade
recall for speed (measure it with :func:`index_recall`); they return k + 1 candidates and the same
tie rule picks k of them.
``k="auto"`` (``knn:k=auto``, opt-in; RouterEval's k = 5 stays the default) picks k from
:data:`K_GRID` at fit time by leave-one-out on the training data alone: each training prompt is
routed by its k nearest *other* training prompts (the same tie rule, its own row left out) and scored
by its own training target in the routed LLM's cell; the k with the highest mean wins, the smaller k
on equal means (:func:`loo_routed_means`). The chosen k and the whole curve are saved with the router.
Every index is saved with ``faiss.write_index`` beside router.json and read back with
``faiss.read_index``; the search-time settings (``nprobe``, ``ef_search``) are applied from the
router's parameters at every search, so ``set_params(nprobe=64)`` on a fitted router takes effect.
"""

from __future__ import annotations

from pathlib import Path
from contextlib import contextmanager
from typing import Any

import numpy as np

from recroute.routers.base import Router, check_features

_METRICS = ("cosine", "l2")
_INDEXES = ("flat", "ivf", "hnsw")
_INDEX_FILE = "index.faiss"
_IVF_TRAIN_PER_CELL = 64  # IVF k-means trains on at most this many prompts per cell
TIE_TOL = 1e-5           # distances this close are equal: the lower training position wins
_MAX_CELLS = 1 << 24     # cells per chunk when gathering neighbours or full distance rows
_SMALL_BATCH = 64        # fewer queries than this search on one FAISS thread
K_GRID = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50)  # k="auto" chooses among these (at most n_train - 1)
AUTO = "auto"


class KNNRouter(Router):
    """kNN router: score (n, n_llms) = nan-mean of the k nearest training prompts' scores.

    ``k``: neighbours per query (RouterEval's 5), or "auto": chosen from :data:`K_GRID` when fitting by
    leave-one-out on the training data (``k_`` the choice, ``k_loo_`` {k: routed mean target}).

    ``metric``: "cosine" (inner product on L2-normalised float32 vectors, sklearn's cosine
    distance) or "l2". ``index``: "flat" (exact search), "ivf" (``nlist`` cells, None = about
    sqrt(n_train) with at least 39 training prompts per cell, k-means on at most 64 per cell;
    ``nprobe`` cells searched) or "hnsw"
    (``hnsw_m`` links per node, ``ef_construction`` at build, ``ef_search`` at query time).
    The defaults nprobe = 12 and ef_search = 12 are the smallest reaching recall@5 >= 0.95 on real
    prompt embeddings of every encoder (benchmarks/results/knn_recall_real.json, ~16k prompts).
    Training cells that are NaN (unobserved) are skipped in the mean; an LLM with no observed
    neighbour scores 0 (as does a query for which an approximate index finds no neighbour).

    New LLMs (``partial_fit_llms``) are placed by reweighting the existing LLMs: each existing LLM is
    weighted by the likelihood of the new LLM's probe results under its own results on those prompts
    (clipped to [``onboard_eps``, 1 - ``onboard_eps``]); the ``onboard_k`` most likely LLMs (ties
    included) give the new LLM's column of training scores as their weighted mean, and its probe
    results replace that mean where a probe is a training prompt. Without probes, the ``onboard_k``
    LLMs nearest in metadata (or all LLMs, without metadata) weigh equally.
    """

    name = "knn"
    supports_new_llms = True

    def __init__(
        self,
        k: int | str = 5,
        metric: str = "cosine",
        index: str = "flat",
        nlist: int | None = None,
        nprobe: int = 12,
        hnsw_m: int = 32,
        ef_construction: int = 40,
        ef_search: int = 12,
        onboard_k: int = 30,
        onboard_eps: float = 0.1,
    ) -> None:
        self.k = k
        self.metric = metric
        self.index = index
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.onboard_k = onboard_k
        self.onboard_eps = onboard_eps

    # ------------------------------------------------------------------ fit / score
    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        self._check_params()
        self.index_ = self._build_index(self._prepare(X))
        self.train_scores_ = np.asarray(Y, dtype=np.float32)
        if self.k == AUTO:
            self.k_loo_ = loo_routed_means(self, K_GRID)
            self.k_ = auto_k(self.k_loo_)

    def n_neighbours(self) -> int:
        """The k in use: ``k``, or with ``k="auto"`` the one chosen at fit time (``k_``)."""
        if self.k != AUTO:
            return int(self.k)
        if not hasattr(self, "k_"):
            from recroute.errors import NotFittedError

            raise NotFittedError("knn: k='auto' is chosen when fitting; fit the router first")
        return int(self.k_)

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        return neighbour_mean_scores(self.train_scores_, self._neighbours(X))

    # ------------------------------------------------------------------ new LLMs
    def _add_llms(self, X: np.ndarray | None, Y: np.ndarray, metadata: np.ndarray | None) -> None:
        """Append one imputed column of training scores per new LLM (see the class docstring)."""
        from recroute.routers.new_llms import llm_similarity_weights

        if not 0 < float(self.onboard_eps) < 0.5 or int(self.onboard_k) < 1:
            raise ValueError(f"knn: need 0 < onboard_eps < 0.5 and onboard_k >= 1; got {self.onboard_eps}, {self.onboard_k}")
        train = self.train_scores_
        rows = np.full(Y.shape[0], -1, dtype=np.int64)
        at_probes = np.zeros((0, self.n_llms_))
        if X is not None:
            rows = self._training_rows(X)
            at_probes = np.where(rows[:, None] >= 0, train[np.maximum(rows, 0)], self._score(X, len(X)))
        known = getattr(self, "llm_metadata_", None)
        W = llm_similarity_weights(
            at_probes, Y, int(self.onboard_k), float(self.onboard_eps),
            None if known is None else known.values, metadata,
        )
        observed = ~np.isnan(train)
        total = np.where(observed, train, 0.0).astype(np.float64) @ W.T
        weight = observed.astype(np.float64) @ W.T
        columns = np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)
        probe, llm = np.nonzero((rows >= 0)[:, None] & ~np.isnan(Y))
        columns[rows[probe], llm] = Y[probe, llm]  # a probe that is a training prompt: its own result
        self.train_scores_ = np.hstack([train, columns.astype(np.float32)])

    def _training_rows(self, X: np.ndarray) -> np.ndarray:
        """int64 (n,): the training row each query duplicates (same vector; the lowest such row), else -1."""
        Q = self._prepare(X)
        train = self._train_vectors() if self.index == "flat" else self._train_vectors_any()
        rows = self._exact_neighbours(Q, 1, train)[:, 0]
        if self.metric == "cosine":
            gap = 1.0 - np.einsum("ij,ij->i", Q, train[rows])
        else:
            gap = np.einsum("ij,ij->i", Q - train[rows], Q - train[rows])
        return np.where(gap <= TIE_TOL, rows, -1).astype(np.int64)

    def _train_vectors_any(self) -> np.ndarray:
        """float32 (n_train, d) vectors of any index type (reconstructed; IVF needs a direct map)."""
        index = self.index_
        if self.index == "ivf":
            import faiss

            faiss.extract_index_ivf(index).make_direct_map()
        return index.reconstruct_n(0, index.ntotal)

    def kneighbors(self, X: np.ndarray) -> np.ndarray:
        """int64 (n, min(k, n_train)): the training rows nearest to each query (unordered, as a set).

        An approximate index may find fewer than k neighbours for a query: the missing ones are -1.
        """
        self._check_fitted()
        X, _ = self._check_query(X, None)
        return self._neighbours(X)

    def _neighbours(self, X: np.ndarray) -> np.ndarray:
        with _faiss_threads_for(len(X)):
            return self._search_neighbours(X)

    def _search_neighbours(self, X: np.ndarray) -> np.ndarray:
        Q = self._prepare(X)
        n_train = self.index_.ntotal
        k = min(self.n_neighbours(), n_train)
        if self.index != "flat":
            self._apply_search_params()
            sims, rows = self.index_.search(Q, min(k + 1, n_train))
            return choose_neighbours(self._distances(sims), rows.astype(np.int64), k)
        sims, rows = self.index_.search(Q, min(k + 1, n_train))
        neighbours = rows[:, :k].astype(np.int64)
        if k < n_train:
            dist = self._distances(sims)
            tied = np.flatnonzero(dist[:, k] - dist[:, k - 1] <= TIE_TOL)
            if tied.size:
                neighbours[tied] = self._exact_neighbours(Q[tied], k, self._train_vectors())
        return neighbours

    def _distances(self, sims: np.ndarray) -> np.ndarray:
        """FAISS's inner products (cosine) or squared L2 as distances (smaller = nearer)."""
        return 1.0 - sims if self.metric == "cosine" else sims

    def _exact_neighbours(self, Q: np.ndarray, k: int, train: np.ndarray) -> np.ndarray:
        """int64 (n, k): the tie rule on full float32 distance rows against ``train`` (n_train, d)."""
        out = np.empty((len(Q), k), dtype=np.int64)
        for start, dist, positions in self._distance_rows(Q, train):
            out[start : start + len(dist)] = choose_neighbours(dist, positions, k)
        return out

    def _distance_rows(self, Q: np.ndarray, train: np.ndarray):
        """Yield (start, float32 distances (chunk, n_train), positions (chunk, n_train)) in bounded chunks."""
        step = max(1, _MAX_CELLS // max(1, len(train)))
        positions = np.arange(len(train), dtype=np.int64)
        for start in range(0, len(Q), step):
            q = Q[start : start + step]
            if self.metric == "cosine":
                dist = np.clip(1.0 - q @ train.T, 0.0, 2.0)
            else:
                sq = np.einsum("ij,ij->i", q, q)[:, None] - 2.0 * (q @ train.T) + np.einsum("ij,ij->i", train, train)
                dist = np.maximum(sq, 0.0)
            yield start, dist, np.broadcast_to(positions, dist.shape)

    def tied_neighbours(self, X: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray, int]]:
        """The queries whose neighbour set a tie decides (flat index), for tie-sensitivity studies.

        One (query, nearer rows, tied rows, room) per such query: the neighbours are ``nearer`` plus
        ``room`` of ``tied`` (recroute takes the lowest positions; another tie order takes others).
        """
        self._check_fitted()
        if self.index != "flat":
            raise ValueError("knn: tied_neighbours needs the exact (flat) index")
        X, _ = self._check_query(X, None)
        Q, n_train = self._prepare(X), self.index_.ntotal
        k = min(self.n_neighbours(), n_train)
        if k >= n_train:
            return []
        sims, _ = self.index_.search(Q, k + 1)
        dist = self._distances(sims)
        maybe = np.flatnonzero(dist[:, k] - dist[:, k - 1] <= TIE_TOL)
        out = []
        for start, rows_dist, positions in self._distance_rows(Q[maybe], self._train_vectors()):
            rows, nearer, band, room = tie_masks(rows_dist, positions, k)
            for i in np.flatnonzero(band.sum(axis=1) > room[:, 0]):
                out.append((int(maybe[start + i]), rows[i, nearer[i]], rows[i, band[i]], int(room[i, 0])))
        return out

    def _train_vectors(self) -> np.ndarray:
        """float32 (n_train, d) view of the vectors stored in the flat index (no copy)."""
        import faiss

        n, d = self.index_.ntotal, self.index_.d
        return faiss.rev_swig_ptr(self.index_.get_xb(), n * d).reshape(n, d)

    def _check_params(self) -> None:
        if self.metric not in _METRICS:
            raise ValueError(f"knn: metric must be one of {_METRICS}; got {self.metric!r}")
        if self.index not in _INDEXES:
            raise ValueError(f"knn: index {self.index!r} is not implemented yet; available: {_INDEXES}")
        if self.k != AUTO:
            if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)):
                raise ValueError(f"knn: k must be a positive integer or 'auto'; got {self.k!r}")
            if self.k < 1:
                raise ValueError(f"knn: k must be at least 1 (or 'auto'); got {self.k!r}")
        for name in ("nprobe", "hnsw_m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"knn: {name} must be a positive integer; got {value!r}")
        if self.nlist is not None and (isinstance(self.nlist, bool) or not isinstance(self.nlist, (int, np.integer))
                                       or self.nlist < 1):
            raise ValueError(f"knn: nlist must be a positive integer or None (automatic); got {self.nlist!r}")

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        """C-contiguous float32; for cosine, rows divided by their norm as sklearn's ``normalize``
        does (einsum norms; zero rows stay zero)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if self.metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", X, X))
            X = np.ascontiguousarray(X / np.where(norms > 0, norms, 1.0)[:, None], dtype=np.float32)
        return X

    def _build_index(self, X: np.ndarray):
        import faiss

        n, d = X.shape
        faiss_metric = faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2
        if self.index == "hnsw":
            index = faiss.IndexHNSWFlat(d, int(self.hnsw_m), faiss_metric)
            index.hnsw.efConstruction = int(self.ef_construction)
        elif self.index == "ivf":
            nlist = auto_nlist(n) if self.nlist is None else int(self.nlist)
            if nlist > n:
                raise ValueError(f"knn: nlist={nlist} is more than the {n} training prompts; lower nlist")
            quantizer = faiss.IndexFlatIP(d) if self.metric == "cosine" else faiss.IndexFlatL2(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_metric)
            index.cp.min_points_per_centroid = 1  # a small nlist on few prompts: no FAISS warning
            index.cp.max_points_per_centroid = _IVF_TRAIN_PER_CELL  # k-means on a sample: a fast build
            index.train(X)  # faiss's Python wrapper keeps the quantizer alive with the index
        else:
            index = faiss.IndexFlatIP(d) if self.metric == "cosine" else faiss.IndexFlatL2(d)
        index.add(X)
        return index

    def _apply_search_params(self) -> None:
        """Set the search-time knobs of an approximate index from the parameters."""
        import faiss

        if self.index == "ivf":
            ivf = faiss.extract_index_ivf(self.index_)
            ivf.nprobe = min(int(self.nprobe), int(ivf.nlist))
        elif self.index == "hnsw":
            faiss.downcast_index(self.index_).hnsw.efSearch = int(self.ef_search)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta: dict[str, Any] = {"n_train": int(self.index_.ntotal)}
        if self.k == AUTO:
            meta.update(k_chosen=int(self.k_), k_loo={str(k): v for k, v in self.k_loo_.items()})
        return meta, {"train_scores": self.train_scores_}

    def _save_extra(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index_, str(path / _INDEX_FILE))

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
        import faiss

        from recroute.errors import SavedArtifactError

        self._check_params()
        self.train_scores_ = np.asarray(arrays["train_scores"], dtype=np.float32)
        if self.k == AUTO:
            if not isinstance(meta.get("k_chosen"), int) or meta["k_chosen"] < 1:
                raise SavedArtifactError(f"{path}: k='auto' but router.json records no chosen k (state.k_chosen)")
            self.k_ = int(meta["k_chosen"])
            self.k_loo_ = {int(k): float("nan") if v is None else float(v) for k, v in (meta.get("k_loo") or {}).items()}
        index_path = Path(path) / _INDEX_FILE
        if not index_path.exists():
            raise SavedArtifactError(f"{path}: missing {_INDEX_FILE}")
        self.index_ = faiss.read_index(str(index_path))
        kind = _index_kind(self.index_)
        if kind != self.index:
            raise SavedArtifactError(f"{index_path}: holds a {kind!r} index but the router's parameters say {self.index!r}")
        if self.index_.ntotal != self.train_scores_.shape[0] or self.index_.d != self.n_features_in_:
            raise SavedArtifactError(
                f"{path}: the index holds {self.index_.ntotal} vectors of size {self.index_.d}, but the router "
                f"has {self.train_scores_.shape[0]} training prompts of size {self.n_features_in_}"
            )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if "index_" in state:  # SWIG objects do not pickle: carry the serialised index bytes
            import faiss

            state["index_"] = faiss.serialize_index(state["index_"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "index_" in state:
            import faiss

            state["index_"] = faiss.deserialize_index(np.asarray(state["index_"], dtype=np.uint8))
        self.__dict__.update(state)


def neighbour_mean_scores(Y: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """float32 (n, m): mean over each row's neighbours of Y's observed cells (0 if none observed).

    Neighbours of -1 (none found by an approximate index) are skipped. Gathers in row chunks of at
    most ``_MAX_CELLS`` (n_chunk x k x m) values to bound memory.
    """
    n, k = neighbours.shape
    out = np.empty((n, Y.shape[1]), dtype=np.float32)
    step = max(1, _MAX_CELLS // max(1, k * Y.shape[1]))
    missing = bool((neighbours < 0).any())
    for start in range(0, n, step):
        rows = neighbours[start : start + step]
        part = Y[np.maximum(rows, 0)] if missing else Y[rows]  # (chunk, k, m)
        observed = ~np.isnan(part)
        if missing:
            observed &= (rows >= 0)[:, :, None]
        total = np.where(observed, part, 0.0).sum(axis=1, dtype=np.float64)
        count = observed.sum(axis=1)
        out[start : start + step] = total / np.maximum(count, 1)
    return out


def loo_neighbours(router: KNNRouter, ks) -> dict[int, np.ndarray]:
    """{k: int64 (n_train, k)} for each k of ``ks`` in 1 .. n_train − 1: each training prompt's k nearest
    *other* training prompts under the router's index and tie rule (its own row left out, so a
    duplicate of it still counts), each row in ascending training position (one search for all k).
    A fitted router; -1 where an approximate index finds fewer."""
    Q = router._train_vectors() if router.index == "flat" else router._train_vectors_any()
    n = len(Q)
    ks = sorted({int(k) for k in ks if 1 <= int(k) <= n - 1})
    if not ks:
        return {}
    with _faiss_threads_for(n):
        if router.index != "flat":
            router._apply_search_params()
        sims, rows = router.index_.search(Q, min(ks[-1] + 2, n))
    rows = rows.astype(np.int64)
    dist = router._distances(sims).astype(np.float64)
    left_out = (rows == np.arange(n, dtype=np.int64)[:, None]) | (rows < 0)
    dist, rows = np.where(left_out, np.inf, dist), np.where(left_out, -1, rows)
    order = np.argsort(dist, axis=1, kind="stable")  # the left-out row (inf) last
    dist, rows = np.take_along_axis(dist, order, 1), np.take_along_axis(rows, order, 1)
    out = {}
    for k in ks:
        if router.index != "flat":  # k + 1 candidates or more: the rule picks k, as when routing
            out[k] = np.sort(choose_neighbours(dist, rows, k), axis=1)
            continue
        chosen = rows[:, :k].copy()
        if k < n - 1:  # a tie at the k-th place: the rule on the full distance row, own row excluded
            tied = np.flatnonzero(dist[:, k] - dist[:, k - 1] <= TIE_TOL)
            for start, full, positions in router._distance_rows(Q[tied], Q):
                part = tied[start : start + len(full)]
                chosen[part] = choose_neighbours(full, np.where(positions == part[:, None], -1, positions), k)
        out[k] = np.sort(chosen, axis=1)
    return out


def loo_routed_means(router: KNNRouter, grid=K_GRID) -> dict[int, float]:
    """{k: mean over training prompts of their own target in the LLM that their k nearest other
    training prompts route to} for each k of ``grid`` below n_train: the argmax of the neighbour means
    (the first LLM on ties); prompts whose routed cell is unobserved are left out (NaN if all are).
    Neighbour rows in position order, so sums never depend on the order of tied items."""
    Y = router.train_scores_
    out: dict[int, float] = {}
    for k, neighbours in loo_neighbours(router, grid).items():
        choice = np.argmax(neighbour_mean_scores(Y, neighbours), axis=1)
        got = Y[np.arange(len(Y)), choice].astype(np.float64)
        out[k] = float(np.mean(got[~np.isnan(got)])) if (~np.isnan(got)).any() else float("nan")
    return out


def auto_k(loo: dict[int, float]) -> int:
    """The k of the highest leave-one-out mean (the smaller k on equal means); 1 when none is finite."""
    finite = [(k, v) for k, v in sorted(loo.items()) if np.isfinite(v)]
    if not finite:
        return 1
    best = max(v for _, v in finite)
    return min(k for k, v in finite if v == best)


def choose_neighbours(dist: np.ndarray, rows: np.ndarray, k: int, tol: float = TIE_TOL) -> np.ndarray:
    """int64 (n, k): k of each query's candidate training rows by recroute's tie rule.

    ``dist`` (n, c) distances of the candidates, ``rows`` (n, c) their training positions (-1 = no
    candidate). With t the k-th smallest distance of a row: candidates nearer than t - tol are chosen,
    then those within tol of t in ascending training position until k are chosen. Rows with fewer than
    k candidates are padded with -1. Only masks, cumulative counts and stable sorts decide, so the
    result is the same on every CPU.
    """
    rows, nearer, band, room = tie_masks(dist, rows, k)
    chosen = nearer | (band & (np.cumsum(band, axis=1) <= room))
    first = np.argsort(~chosen, axis=1, kind="stable")[:, : min(int(k), rows.shape[1])]  # chosen first, by position
    return np.where(np.take_along_axis(chosen, first, 1), np.take_along_axis(rows, first, 1), -1).astype(np.int64)


def tie_masks(dist: np.ndarray, rows: np.ndarray, k: int, tol: float = TIE_TOL):
    """The parts of the tie rule: (rows, nearer, band, room), candidates sorted by training position.

    rows int64 (n, c); nearer bool (n, c): nearer than t - tol (always neighbours); band bool (n, c):
    within tol of t (tied); room int (n, 1): how many of the band are neighbours. A tie decides a row
    where ``band.sum(1) > room``.
    """
    dist = np.where(rows >= 0, np.asarray(dist, dtype=np.float64), np.inf)
    by_position = np.argsort(np.where(rows >= 0, rows, np.iinfo(np.int64).max), axis=1, kind="stable")
    dist, rows = np.take_along_axis(dist, by_position, 1), np.take_along_axis(np.asarray(rows, np.int64), by_position, 1)
    k = min(int(k), dist.shape[1])
    t = np.partition(dist, k - 1, axis=1)[:, k - 1 : k]  # a value: the same whatever the kernel
    with np.errstate(invalid="ignore"):  # inf - inf where a row has fewer than k candidates
        nearer = dist < t - tol
        band = np.abs(dist - t) <= tol
    return rows, nearer, band, k - nearer.sum(axis=1, keepdims=True)


def auto_nlist(n_train: int) -> int:
    """IVF cells for ``n_train`` prompts: about sqrt(n), with at least 39 prompts per cell.

    sqrt(n) keeps the k-means build to about a minute at 1M prompts (4·sqrt(n), FAISS's usual
    advice for search speed alone, takes several); raise ``nlist`` for faster search on huge sets.
    """
    return int(max(1, min(round(np.sqrt(n_train)), n_train // 39)))


def _index_kind(index) -> str:
    """"flat", "ivf" or "hnsw" for a FAISS index read from disk."""
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    return type(index).__name__


def exact_neighbours(X_train: np.ndarray, Q: np.ndarray, k: int, metric: str = "cosine") -> np.ndarray:
    """int64 (n_queries, k): the exact k nearest training rows (FAISS flat search, nearest first)."""
    router = KNNRouter(k=k, metric=metric)
    router._check_params()
    index = router._build_index(router._prepare(check_features(X_train)))
    return index.search(router._prepare(check_features(Q, n_features=index.d)), min(int(k), index.ntotal))[1]


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / |exact| (found, exact: int (n, k); -1 = none found)."""
    found, exact = np.asarray(found), np.asarray(exact)
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"found has {found.shape[0]} rows but exact has {exact.shape[0]}")
    hits = (found[:, :, None] == exact[:, None, :]) & (exact[:, None, :] >= 0)
    return float(np.mean(hits.any(axis=1).sum(axis=1) / np.maximum((exact >= 0).sum(axis=1), 1)))


def index_recall(router: KNNRouter, X_train: np.ndarray, Q: np.ndarray) -> float:
    """recall@k of a fitted router's (approximate) neighbours against exact search over ``X_train``.

    ``X_train`` (n_train, d): the features the router was fitted on; ``Q`` (n_queries, d): queries.
    """
    router._check_fitted()
    if len(X_train) != router.index_.ntotal:
        raise ValueError(f"X_train has {len(X_train)} rows but the router's index holds {router.index_.ntotal}")
    exact = exact_neighbours(X_train, Q, router.n_neighbours(), router.metric)
    return recall_at_k(router.kneighbors(Q), exact)


@contextmanager
def _faiss_threads_for(n_queries: int):
    """One FAISS thread for small query batches (single prompts while serving).

    Waking FAISS's OpenMP pool for a handful of queries right after torch's own pool ran (the
    encoder) costs more than the search; measured here: single-prompt routing p50 20 ms with two
    FAISS threads, 14 ms with one. Large batches keep every thread. Results are identical.
    """
    import faiss

    if n_queries >= _SMALL_BATCH:
        yield
        return
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)
