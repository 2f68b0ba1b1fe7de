"""The gateway's counters, latency histograms and selection entropy, rendered as Prometheus text.

Written for one worker's event loop (no locks). With several workers each keeps its own counts and
leaves them in a file of the host's metrics folder (``write_state``); ``/metrics`` adds every worker's
(``read_states`` + ``add_state``), and the selection window is the host's shared one
(``recroute.serve.shared.SharedWindow``). Exposition format 0.0.4:
https://prometheus.io/docs/instrumenting/exposition_formats/ . The selection entropy is the Shannon
entropy (bits) of the routed LLMs' shares over the last ``window`` routed requests: log2(m) when m
LLMs are chosen equally often, 0 when the router has collapsed onto one LLM (RouterEval's E_p
failure mode). It is compared with the floor only once the window is full.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, deque
from pathlib import Path
from typing import Iterable, Sequence

OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def entropy_bits(counts: Iterable[int]) -> float:
    """Shannon entropy in bits of the distribution proportional to ``counts`` (0 for no counts)."""
    values = [c for c in counts if c > 0]
    total = sum(values)
    if total == 0:
        return 0.0
    return max(0.0, -sum(c / total * math.log2(c / total) for c in values))


class SelectionWindow:
    """The last ``size`` routed choices and their entropy, updated in O(1) per choice."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"the entropy window must hold at least 1 request; got {size}")
        self.size = int(size)
        self._items: deque[str] = deque()
        self.counts: Counter[str] = Counter()

    def add(self, llm: str) -> None:
        self._items.append(llm)
        self.counts[llm] += 1
        if len(self._items) > self.size:
            old = self._items.popleft()
            self.counts[old] -= 1
            if not self.counts[old]:
                del self.counts[old]

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.size

    def entropy(self) -> float:
        return entropy_bits(self.counts.values())


class Histogram:
    """Cumulative-bucket histogram (seconds) per label value."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.series: dict[str, list] = {}  # label -> [bucket counts (non-cumulative) + [+Inf], sum, count]

    def observe(self, label: str, seconds: float) -> None:
        entry = self.series.get(label)
        if entry is None:
            entry = self.series[label] = [[0] * (len(self.buckets) + 1), 0.0, 0]
        i = 0
        while i < len(self.buckets) and seconds > self.buckets[i]:
            i += 1
        entry[0][i] += 1
        entry[1] += seconds
        entry[2] += 1

    def add(self, series: dict[str, list]) -> None:
        """Add another worker's ``series`` (same buckets) to this one's."""
        for label, (counts, total, count) in series.items():
            entry = self.series.get(label)
            if entry is None:
                entry = self.series[label] = [[0] * (len(self.buckets) + 1), 0.0, 0]
            entry[0] = [a + b for a, b in zip(entry[0], counts)]
            entry[1] += total
            entry[2] += count

    def lines(self, name: str, label_name: str | None) -> list[str]:
        out = []
        for label, (counts, total, count) in sorted(self.series.items()):
            base = f'{label_name}="{_escape(label)}",' if label_name else ""
            running = 0
            for bound, c in zip(self.buckets + (math.inf,), counts):
                running += c
                le = "+Inf" if bound == math.inf else repr(float(bound))
                out.append(f'{name}_bucket{{{base}le="{le}"}} {running}')
            tail = "{" + base.rstrip(",") + "}" if base else ""
            out.append(f"{name}_sum{tail} {total!r}")
            out.append(f"{name}_count{tail} {count}")
        return out


class GatewayMetrics:
    """Requests, upstream errors and fallbacks per LLM, latencies, and the selection entropy."""

    def __init__(self, llms: Sequence[str], window: int = 1000, entropy_floor: float | None = None,
                 selection=None) -> None:
        """``selection``: a shared window (``recroute.serve.shared.SharedWindow``) instead of a
        private ``SelectionWindow(window)``."""
        self.llms = list(llms)
        self.window = selection if selection is not None else SelectionWindow(window)
        self.entropy_floor = entropy_floor
        self.requests: Counter[tuple[str, str]] = Counter()  # (llm or "", status code) -> n
        self.upstream_errors: Counter[tuple[str, str]] = Counter()  # (llm, kind) -> n
        self.fallbacks: Counter[str] = Counter()  # LLM that failed and was fallen back from -> n
        self.latency = Histogram()
        self.routing = Histogram()
        self.overhead = Histogram(OVERHEAD_BUCKETS)

    def state(self) -> dict:
        """This worker's counts and histograms, JSON-able (the selection window is not in it)."""
        return {"requests": [[llm, code, n] for (llm, code), n in self.requests.items()],
                "upstream_errors": [[llm, kind, n] for (llm, kind), n in self.upstream_errors.items()],
                "fallbacks": [[llm, n] for llm, n in self.fallbacks.items()],
                "latency": self.latency.series, "routing": self.routing.series, "overhead": self.overhead.series}

    def add_state(self, doc: dict) -> None:
        """Add another worker's :meth:`state`."""
        for llm, code, n in doc["requests"]:
            self.requests[(llm, code)] += n
        for llm, kind, n in doc["upstream_errors"]:
            self.upstream_errors[(llm, kind)] += n
        for llm, n in doc["fallbacks"]:
            self.fallbacks[llm] += n
        for name in ("latency", "routing", "overhead"):
            getattr(self, name).add(doc[name])

    def total(self, others: Iterable[dict]) -> "GatewayMetrics":
        """A GatewayMetrics holding this worker's counts plus ``others`` (states), sharing its window."""
        out = GatewayMetrics(self.llms, self.window.size, self.entropy_floor, selection=self.window)
        for doc in [self.state(), *others]:
            out.add_state(doc)
        return out

    def request(self, llm: str | None, status: int, seconds: float, overhead_s: float | None = None) -> None:
        """One client request answered with ``status`` by ``llm`` (None: no upstream answered) in
        ``seconds``, of which ``overhead_s`` were the gateway's own (not waiting on an upstream)."""
        self.requests[(llm or "", str(status))] += 1
        self.latency.observe(llm or "", seconds)
        if overhead_s is not None:
            self.overhead.observe("", overhead_s)

    def upstream_error(self, llm: str, kind: str, fell_back: bool) -> None:
        """An upstream failure of ``kind`` (connect, timeout, closed, http_5xx); ``fell_back``: another LLM was tried."""
        self.upstream_errors[(llm, kind)] += 1
        if fell_back:
            self.fallbacks[llm] += 1

    def routed(self, llm: str, seconds: float) -> None:
        """One routing decision (the router's choice) taking ``seconds``."""
        self.window.add(llm)
        self.routing.observe("", seconds)

    @property
    def collapsed(self) -> bool:
        """The window is full and its entropy is below the floor."""
        return (self.entropy_floor is not None and self.window.full
                and self.window.entropy() < self.entropy_floor)

    def health(self) -> dict:
        """The selection-entropy part of /healthz."""
        entropy = self.window.entropy()
        doc = {"status": "ok", "selection_entropy_bits": round(entropy, 6), "entropy_floor_bits": self.entropy_floor,
               "window": self.window.size, "window_filled": len(self.window)}
        if self.collapsed:
            top, n = self.window.counts.most_common(1)[0]
            doc["status"] = "degraded"
            doc["warnings"] = [f"selection entropy {entropy:.3f} bits over the last {len(self.window)} routed requests "
                               f"is below the floor {self.entropy_floor} bits: the router is collapsing "
                               f"({top!r} took {n / len(self.window):.0%})"]
        return doc

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        lines = ["# HELP recroute_gateway_requests_total Client requests by answering LLM (empty: none) and HTTP status.",
                 "# TYPE recroute_gateway_requests_total counter"]
        lines += [f'recroute_gateway_requests_total{{llm="{_escape(llm)}",code="{code}"}} {n}'
                  for (llm, code), n in sorted(self.requests.items())]
        lines += ["# HELP recroute_gateway_upstream_errors_total Upstream failures by LLM and kind.",
                  "# TYPE recroute_gateway_upstream_errors_total counter"]
        lines += [f'recroute_gateway_upstream_errors_total{{llm="{_escape(llm)}",kind="{kind}"}} {n}'
                  for (llm, kind), n in sorted(self.upstream_errors.items())]
        lines += ["# HELP recroute_gateway_fallbacks_total Fallbacks away from an LLM that failed.",
                  "# TYPE recroute_gateway_fallbacks_total counter"]
        lines += [f'recroute_gateway_fallbacks_total{{llm="{_escape(llm)}"}} {self.fallbacks.get(llm, 0)}'
                  for llm in self.llms]
        lines += ["# HELP recroute_gateway_request_duration_seconds Client request latency by answering LLM.",
                  "# TYPE recroute_gateway_request_duration_seconds histogram"]
        lines += self.latency.lines("recroute_gateway_request_duration_seconds", "llm")
        lines += ["# HELP recroute_gateway_overhead_seconds Gateway time per request minus its upstream time.",
                  "# TYPE recroute_gateway_overhead_seconds histogram"]
        lines += self.overhead.lines("recroute_gateway_overhead_seconds", None)
        lines += ["# HELP recroute_gateway_routing_duration_seconds Routing decision latency (encoder + router).",
                  "# TYPE recroute_gateway_routing_duration_seconds histogram"]
        lines += self.routing.lines("recroute_gateway_routing_duration_seconds", None)
        lines += ["# HELP recroute_gateway_selections_window Routed choices per LLM in the entropy window.",
                  "# TYPE recroute_gateway_selections_window gauge"]
        lines += [f'recroute_gateway_selections_window{{llm="{_escape(llm)}"}} {self.window.counts.get(llm, 0)}'
                  for llm in self.llms]
        lines += ["# HELP recroute_gateway_selection_entropy_bits Entropy (bits) of the routed choices in the window.",
                  "# TYPE recroute_gateway_selection_entropy_bits gauge",
                  f"recroute_gateway_selection_entropy_bits {self.window.entropy()!r}"]
        if self.entropy_floor is not None:
            lines += ["# HELP recroute_gateway_selection_entropy_floor_bits The configured entropy floor.",
                      "# TYPE recroute_gateway_selection_entropy_floor_bits gauge",
                      f"recroute_gateway_selection_entropy_floor_bits {float(self.entropy_floor)!r}"]
        lines += ["# HELP recroute_gateway_collapsed 1 when the window is full and its entropy is below the floor.",
                  "# TYPE recroute_gateway_collapsed gauge", f"recroute_gateway_collapsed {int(self.collapsed)}"]
        return "\n".join(lines) + "\n"


def write_state(folder: str | Path, metrics: GatewayMetrics, poke: int) -> None:
    """Leave this worker's metrics state in ``folder`` (one file per process, replaced atomically),
    with the last flush request (``poke``) it answers."""
    folder = Path(folder)
    tmp = folder / f".worker-{os.getpid()}.json.tmp"
    tmp.write_text(json.dumps({"poke": poke, "metrics": metrics.state()}))
    os.replace(tmp, folder / f"worker-{os.getpid()}.json")


def read_states(folder: str | Path, skip_pid: int | None = None) -> dict[int, dict]:
    """{pid: {"poke", "metrics"}} of every worker file in ``folder`` (dead workers' included, so their
    counts still add up), but ``skip_pid``'s; an unreadable file is left out."""
    out = {}
    for file in Path(folder).glob("worker-*.json"):
        try:
            pid = int(file.stem.split("-", 1)[1])
            if pid != skip_pid:
                out[pid] = json.loads(file.read_text())
        except (ValueError, OSError):  # being replaced or torn: the next scrape reads it
            continue
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
