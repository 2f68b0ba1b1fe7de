"""The stream simulator through real processes: files for a replayed start, and the traffic client.

- :func:`write_anchor`: the start set (full results of the start prompts) as a dataset folder whose
  prompts carry the replay's ``reference`` answers: ``recroute loop run --anchor``.
- :func:`write_upstreams`: an upstreams file pointing every LLM at the replay server.
- :func:`send_traffic`: each prompt once through the gateway (``model: recroute``), then its outcome
  (the stored score of the LLM that answered: the client's feedback) to ``POST /v1/feedback``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from recroute.loop.replay import reference


def write_anchor(data, rows: np.ndarray, folder: str | Path, llms: Sequence[str] | None = None) -> Path:
    """The prompts ``rows`` of ``data`` (and the LLMs ``llms``, default all) as a dataset folder with a
    ``reference`` column."""
    sub = data.subset(prompts=np.asarray(rows, dtype=np.int64), llms=None if llms is None else list(llms))
    sub.prompts["reference"] = [reference(str(p)) for p in sub.prompt_ids]
    return Path(sub.save(folder))


def write_upstreams(path: str | Path, llms: Sequence[str], replay_url: str) -> Path:
    """A TOML upstreams file: every LLM at ``{replay_url}/{llm}/v1``."""
    lines = []
    for llm in llms:
        lines += [f'[upstreams."{llm}"]', f'base_url = "{replay_url.rstrip("/")}/{llm}/v1"', "timeout_s = 30", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")
    return Path(path)


def send_traffic(gateway_url: str, data, rows: Sequence[int], key: str | None = None,
                 timeout_s: float = 60.0, feedback: bool = True, observed_only: bool = False,
                 candidates=None) -> list[dict]:
    """Route each prompt of ``rows`` once through the gateway and post its outcome (unless ``feedback``
    is False); one dict per request: {row, decision_id, llm, outcome, status, feedback_status}.
    ``observed_only``: each request's ``candidates`` are the LLMs with a stored result for its prompt
    (as the in-process simulator's), so a sparse dataset never routes to an LLM the replay cannot answer;
    ``candidates``: a function of the row giving its request's candidate LLM names (instead)."""
    import httpx

    Y = data.dense(np.nan)
    col = {str(n): j for j, n in enumerate(data.llm_names)}
    texts = data.texts
    headers = {"authorization": f"Bearer {key}"} if key else {}
    out = []
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=timeout_s) as client:
        for row in rows:
            model = "recroute"
            if candidates is not None:
                model += ":candidates=" + "|".join(candidates(row))
            elif observed_only:
                model += ":candidates=" + "|".join(str(n) for n, j in col.items() if not np.isnan(Y[row, j]))
            body = {"model": model, "messages": [{"role": "user", "content": str(texts[row])}]}
            r = client.post("/v1/chat/completions", json=body)
            rec = {"row": int(row), "status": r.status_code, "decision_id": r.headers.get("x-recroute-decision-id"),
                   "llm": r.headers.get("x-recroute-llm")}
            if r.status_code == 200 and rec["llm"] in col:
                rec["outcome"] = float(np.nan_to_num(Y[row, col[rec["llm"]]]))
            if feedback and "outcome" in rec:
                fb = client.post("/v1/feedback", json={"decision_id": rec["decision_id"], "outcome": rec["outcome"]})
                rec["feedback_status"] = fb.status_code
            out.append(rec)
    return out
