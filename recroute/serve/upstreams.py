"""The gateway's upstreams file: which OpenAI-compatible endpoint answers for each LLM of a bundle.

TOML, one table per LLM name of the bundle::

    [upstreams."gpt-4o-2024-05-13"]
    base_url = "http://127.0.0.1:9001/v1"     # required; the gateway POSTs to {base_url}/chat/completions
    model = "gpt-4o"                           # the upstream's model name (default: the LLM name)
    api_key_env = "OPENAI_API_KEY"             # optional: the key is read from this environment variable
    timeout_s = 30                             # optional (default 60): connect/read/write timeout
    connect_timeout_s = 2                      # optional (default timeout_s): to open a connection
    first_byte_timeout_s = 20                  # optional (default timeout_s): request sent -> status line
                                               #   (and, streaming, the first chunk)
    total_timeout_s = 120                      # optional (default none): the whole answer, stream included
    input_price_per_mtok = 5.0                 # optional $ per million input tokens (cost in the log)
    output_price_per_mtok = 15.0               # optional $ per million output tokens

API keys are read from the environment only (never from the file) and are never logged or shown
(``repr`` hides them). LLMs of the bundle without an entry are left out of routing (the caller warns);
an entry for an LLM the bundle does not know is an error.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from recroute.errors import DataError

DEFAULT_TIMEOUT_S = 60.0
_TIMEOUTS = ("timeout_s", "connect_timeout_s", "first_byte_timeout_s", "total_timeout_s")
_KEYS = {"base_url", "model", "api_key_env", *_TIMEOUTS, "input_price_per_mtok", "output_price_per_mtok"}


@dataclass(frozen=True)
class Upstream:
    """One LLM's OpenAI-compatible endpoint. ``api_key`` comes from the environment (hidden in repr)."""

    llm: str
    base_url: str
    model: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    api_key_env: str | None = None
    input_price_per_mtok: float | None = None
    output_price_per_mtok: float | None = None
    api_key: str | None = field(default=None, repr=False)
    connect_timeout_s: float | None = None  # None: timeout_s
    first_byte_timeout_s: float | None = None  # None: timeout_s (the per-read timeout covers it)
    total_timeout_s: float | None = None  # None: no limit on the whole answer

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """$ for the given token counts from the prices; None when a needed price or count is missing."""
        parts = [(input_tokens, self.input_price_per_mtok), (output_tokens, self.output_price_per_mtok)]
        if all(price is None for _, price in parts):
            return None
        total = 0.0
        for tokens, price in parts:
            if price is None:
                continue
            if tokens is None:
                return None
            total += tokens * price / 1e6
        return total


def load_upstreams(
    path: str | Path, llm_names: Sequence[str], environ: Mapping[str, str] | None = None, spare: bool = False
) -> tuple[dict[str, Upstream], list[str]]:
    """({llm: Upstream} in the bundle's LLM order, [bundle LLMs without an entry]) from a TOML file.

    Raises DataError naming the file and entry for unreadable TOML, an LLM the bundle does not know,
    an unknown key, a bad value, or an ``api_key_env`` variable that is not set.
    """
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"--upstreams {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid TOML ({exc})") from None
    return parse_upstreams(doc, llm_names, str(path), os.environ if environ is None else environ, spare)


def parse_upstreams(
    doc: Mapping[str, Any], llm_names: Sequence[str], where: str, environ: Mapping[str, str], spare: bool = False
) -> tuple[dict[str, Upstream], list[str]]:
    """The checks of :func:`load_upstreams` on an already parsed document. ``spare``: entries for LLMs
    the bundle does not know are kept (after the bundle's, in file order) instead of an error: they are
    routed to once a reloaded bundle knows them (``recroute loop`` onboarding a new LLM)."""
    table = doc.get("upstreams")
    extra = sorted(set(doc) - {"upstreams"})
    if extra:
        raise DataError(f"{where}: unknown top-level key(s) {extra}; expected only [upstreams.\"LLM name\"] tables")
    if not isinstance(table, dict) or not table:
        raise DataError(f"{where}: no [upstreams.\"LLM name\"] tables")
    known = set(llm_names)
    unknown = [name for name in table if name not in known]
    if unknown and not spare:
        raise DataError(f"{where}: upstream(s) {unknown[:5]} are not LLMs of the bundle (it has {list(llm_names)[:10]})")
    order = [name for name in llm_names if name in table] + (unknown if spare else [])
    out = {name: _entry(name, table[name], f"{where} [upstreams.{name!r}]", environ) for name in order}
    return out, [name for name in llm_names if name not in table]


def _entry(name: str, entry: Any, where: str, environ: Mapping[str, str]) -> Upstream:
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected a table")
    bad = sorted(set(entry) - _KEYS)
    if bad:
        raise DataError(f"{where}: unknown key(s) {bad}; allowed: {sorted(_KEYS)}")
    base_url = entry.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise DataError(f"{where}: base_url must be an http(s) URL string; got {base_url!r}")
    model = entry.get("model", name)
    if not isinstance(model, str) or not model:
        raise DataError(f"{where}: model must be a non-empty string; got {model!r}")
    timeouts = {}
    for key in _TIMEOUTS:
        value = entry.get(key, DEFAULT_TIMEOUT_S if key == "timeout_s" else None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 < value < math.inf):
            raise DataError(f"{where}: {key} must be a positive number of seconds; got {value!r}")
        timeouts[key] = None if value is None else float(value)
    prices = {}
    for key in ("input_price_per_mtok", "output_price_per_mtok"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value < math.inf):
            raise DataError(f"{where}: {key} must be a finite number >= 0; got {value!r}")
        prices[key] = None if value is None else float(value)
    key_env = entry.get("api_key_env")
    api_key = None
    if key_env is not None:
        if not isinstance(key_env, str) or not key_env:
            raise DataError(f"{where}: api_key_env must name an environment variable; got {key_env!r}")
        api_key = environ.get(key_env)
        if not api_key:
            raise DataError(f"{where}: environment variable {key_env} (api_key_env) is not set")
    return Upstream(name, base_url, model, api_key_env=key_env, api_key=api_key, **timeouts, **prices)
