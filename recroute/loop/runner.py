"""One step of the loop, and the driver behind ``recroute loop run``.

:func:`refit_and_gate` is the decision itself, shared by the running loop and the in-process stream
simulator: hold out the most recent decisions, refit each candidate family on the rest
(:func:`~recroute.loop.refit.fit_candidate`), estimate candidate - live on the held-out slice
(:func:`~recroute.loop.gate.compare`, Bonferroni over the families) and apply the promotion rule.

:class:`LoopRunner` runs it against a gateway: each :meth:`~LoopRunner.step` reads the journal's state
and the decision log, onboards any LLM of the upstreams file the live bundle does not know, refits
when the schedule says so, and promotes through a ``Promote`` (the gateway's hot reload). Everything
it decides is journalled before and after it acts, so a restarted loop picks up where it stopped.

``explore="shadow"`` (``recroute.loop.shadow`` through the gateway's ``POST /admin/shadow``): each refit
is installed as the gateway's shadow with ε = ``shadow.first_epsilon`` (the budget over the refit's
disagreement with live estimated on the recent logged prompts before it serves), retuned after each
look; at each later scheduled step the shadow is gated (``shadow.shallow_promotion``, look j at level ``look_alpha``) on the decisions logged since it first served, with the logging probabilities rebuilt
from the log (:func:`shadow_logging`) and checked against the logged propensities. With ``shadow_tau`` T > 0
the shadow served and gated first is ``ConservativeRouter(refit, live, T)`` (:func:`served_policy`); when it
passes, the plain refit is gated second at the same level (a fixed-sequence test) and, if it passes too, the
shadow's own bundle is promoted (live stays one level deep), else a bundle holding exactly the conservative
router (T = 0: the refit's bundle, one gate); it is replaced by a fresh refit on every decision when it passed or after
``shadow_looks`` looks. ``explore="epsilon"``: the gateway's own policy explores, each refit is gated
on the most recent ``holdout`` decisions (:func:`refit_and_gate`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from recroute.errors import DataError, RecrouteError
from recroute.loop.gate import GateResult, compare, promotion_decision
from recroute.loop.journal import Journal, shadow_looks
from recroute.loop.onboard import DEFAULT_DESIGN, DESIGNS, onboard_llm
from recroute.loop.promote import Promote, PromotionError, Serving
from recroute.loop.refit import (
    Anchor,
    LogData,
    LogTail,
    fit_candidate,
    holdout_reward,
    log_data,
    split_recent,
)
from recroute.loop.schedule import Schedule
from recroute.routers.base import scores_among

logger = logging.getLogger("recroute.loop")


@dataclass
class LoopSettings:
    """families: router specs refitted (None: the live router's own spec); holdout: recent decisions
    held out for the gate (a count, or a share below 1); min_outcomes: outcomes needed before a first
    refit; alpha: 1 - the interval's level (split over the families); margin / min_support: the
    promotion rule (``gate.promotion_decision``); reward_router: the DR reward model; explore_budget:
    the off-greedy share the live policy may use (journalled against the measured share); probe_budget,
    min_probes, probe_every, onboard_margin, onboard_min_support: onboarding (``onboard.onboard_llm``: the
    same gate rule at level alpha, with a non-inferiority margin and a support of its own; onboard_design: the
    probe design, ``recroute.coldstart.design``); anchor_reward:
    the DR reward model of refits and gates fitted on the anchor's full results too
    (``refit.fit_candidate``'s ``anchor_reward``; needs the anchor set)."""

    families: tuple[str, ...] | None = None
    schedule: Schedule = field(default_factory=Schedule)
    holdout: float | int = 0.3
    min_outcomes: int = 500
    alpha: float = 0.05
    margin: float = 0.0
    min_support: int = 3
    reward_router: str = "linear"
    explore_budget: float | None = None
    probe_budget: int = 200
    min_probes: int = 40
    probe_every: int = 40
    onboard_margin: float = -0.03
    onboard_min_support: int = 10
    onboard_design: str = DEFAULT_DESIGN  # which anchor prompts are probed (onboard.DESIGNS)
    explore: str = "epsilon"
    shadow_looks: int = 3
    shadow_cap: float = 0.5
    anchor_reward: bool = False
    shadow_tau: float = 0.2  # the shadow served and promoted is ConservativeRouter(refit, live, shadow_tau)

    def check(self) -> None:
        if self.explore not in ("epsilon", "shadow"):
            raise DataError(f"explore must be 'epsilon' or 'shadow'; got {self.explore!r}")
        if self.explore == "shadow" and (self.explore_budget is None or not 0 < self.explore_budget <= 1):
            raise DataError("--explore shadow needs an exploration budget in (0, 1] (--explore-budget)")
        if self.onboard_design not in DESIGNS:
            raise DataError(f"onboard_design must be one of {', '.join(DESIGNS)}; got {self.onboard_design!r}")
        if self.shadow_looks < 1:
            raise DataError(f"shadow_looks must be at least 1; got {self.shadow_looks}")
        if not (np.isfinite(self.shadow_tau) and self.shadow_tau >= 0):
            raise DataError(f"shadow_tau must be a finite number >= 0; got {self.shadow_tau}")
        if not 0 < self.alpha < 1:
            raise DataError(f"alpha must be in (0, 1); got {self.alpha}")
        if self.min_support < 0 or self.min_outcomes < 2:
            raise DataError("min_support must be >= 0 and min_outcomes >= 2")
        if self.families is not None and not self.families:
            raise DataError("families names no router")
        if not self.holdout > 0:
            raise DataError(f"holdout must be a share in (0, 1) or a count >= 1; got {self.holdout}")


@dataclass
class Verdict:
    """One candidate family's refit and its gate result."""

    family: str
    router: object
    result: GateResult
    promote: bool
    reason: str
    fit_s: float
    n_train: int


def router_spec(router) -> str:
    """The registry spec of a fitted router (its family and parameters)."""
    from recroute.serve.bundle import _spec

    return _spec(router)


def refit_family(router) -> str:
    """The spec a refit of ``router`` uses: its own, or for a promoted conservative router its refit's
    (a conservative router is built from two fitted routers, never fitted itself)."""
    from recroute.routers.conservative import fitted_family

    return router_spec(fitted_family(router))


def refit_and_gate(live_router, data: LogData, settings: LoopSettings, anchor: Anchor | None = None,
                   seed: int = 0) -> list[Verdict]:
    """Refit every family on all but the most recent decisions of ``data`` and gate each against
    ``live_router`` on those recent decisions."""
    bandit, X = data.bandit, data.X
    train, hold = split_recent(len(bandit), settings.holdout)
    families = settings.families or (refit_family(live_router),)
    reward_anchor = anchor if settings.anchor_reward else None
    q = holdout_reward(bandit, X, train, hold, settings.reward_router, reward_anchor)
    recent = bandit.take(hold)
    feats = None if X is None else X[recent.rows]
    out = []
    for spec in families:
        start = time.perf_counter()
        candidate = fit_candidate(spec, bandit.take(train), X, anchor, settings.reward_router, seed=seed,
                                  anchor_reward=settings.anchor_reward)
        fit_s = time.perf_counter() - start
        result = compare(recent, feats, candidate, live_router, q, settings.alpha / len(families), seed,
                         logging=None if data.logging is None else data.logging[hold])
        ok, reason = promotion_decision(result, settings.margin, settings.min_support)
        out.append(Verdict(spec, candidate, result, ok, reason, fit_s, len(train)))
    return out


def best_verdict(verdicts: list[Verdict]) -> Verdict | None:
    """The promotable verdict with the highest lower bound (None when none passed)."""
    passed = [v for v in verdicts if v.promote]
    return max(passed, key=lambda v: v.result.lower) if passed else None


# ---------------------------------------------------------------------- the running loop
Answer = Callable[[str, int], float]  # (llm, anchor row) -> result in [0, 1]


class LoopRunner:
    """The loop against a live gateway: its decision log in, bundles promoted through ``promote``.

    ``anchor_data``: the start set (RoutingDataset) for the anchor and probes; ``upstreams_path``: the
    gateway's upstreams file, watched for new LLMs; ``answer``: how a new LLM answers an anchor prompt
    (default: :func:`probe_answer` over the upstreams file and the anchor's ``reference`` column);
    ``serving``: which bundle the gateway serves, checked each step (a restarted gateway is put back
    on the live bundle).
    """

    def __init__(self, log_path: str | Path, journal: Journal, promote: Promote, workdir: str | Path,
                 settings: LoopSettings | None = None, anchor_data=None, upstreams_path: str | Path | None = None,
                 answer: Answer | None = None, seed: int = 0, serving: Serving | None = None,
                 shadow_client=None) -> None:
        self.log_path = Path(log_path)
        self.journal = journal
        self.promote_fn = promote
        self.workdir = Path(workdir)
        self.settings = settings or LoopSettings()
        self.settings.check()
        self.anchor_data = anchor_data
        self.upstreams_path = None if upstreams_path is None else Path(upstreams_path)
        self.answer = answer
        self.seed = seed
        self.serving = serving
        self.shadow_client = shadow_client  # recroute.loop.promote.ShadowClient (explore="shadow")
        if self.settings.explore == "shadow" and shadow_client is None:
            raise DataError("explore='shadow' needs the gateway's shadow endpoints (a ShadowClient)")
        self._bundles: dict[str, object] = {}
        self._tail = None if self.log_path.suffix.lower() == ".parquet" else LogTail(self.log_path)  # new lines only

    def start(self, live_bundle: str | Path, **settings) -> None:
        """Journal the start (once: a restarted loop keeps its journal's live bundle)."""
        if not self.journal.events():
            self.journal.append("start", live_bundle=str(Path(live_bundle).resolve()), **settings)

    def bundle(self, path: str):
        from recroute.serve.bundle import RoutingBundle

        if path not in self._bundles:
            self._bundles[path] = RoutingBundle.load(path)
        return self._bundles[path]

    def step(self, now: float | None = None) -> list[dict]:
        """Resume a pending promotion, onboard new LLMs, refit and gate when due; the events journalled."""
        from recroute.feedback.logs import read_decision_log

        now = time.time() if now is None else now
        events: list[dict] = []
        state = self.journal.state()
        if state.live_bundle is None:
            raise DataError(f"{self.journal.path}: no start event: call start(live_bundle) first")
        if state.pending is not None:
            events += self._promote(state.pending["bundle"], state.pending["kind"], resumed=True)
            state = self.journal.state()
        if self.serving is not None:  # a restarted gateway serves its start-up bundle: put the live one back
            from recroute.serve.bundle import bundle_checksum

            now_serving = self.serving()
            if now_serving is not None and now_serving != bundle_checksum(Path(state.live_bundle)):
                events += self._promote(state.live_bundle, "restore")
        if self.upstreams_path is not None:
            for llm in self.new_llms(state):
                events += self._onboard(llm, self.bundle(state.live_bundle))
                state = self.journal.state()
        s = self.settings
        if s.explore == "shadow":
            events += self._restore_shadow(self.journal.state())
        if not self.log_path.is_file():
            return events
        log = self._tail.read() if self._tail is not None else read_decision_log(self.log_path)
        n_outcomes = int(log["outcome"].notna().sum())
        state = self.journal.state()
        if n_outcomes < s.min_outcomes or not s.schedule.due(n_outcomes, state.last_refit_outcomes, now,
                                                             state.last_refit_time):
            return events
        if s.explore == "shadow":
            return events + self._shadow_step(log, state, n_outcomes)
        live = self.bundle(state.live_bundle)
        data = log_data(log, live, routers=self._routers(state))
        anchor = self._anchor(live)
        verdicts = refit_and_gate(live.router, data, s, anchor, self.seed)
        best = best_verdict(verdicts)
        bundle_path = None
        if best is not None:
            bundle_path = str(self.save_bundle(best.router, live, f"refit-{n_outcomes}"))
        reason = best.reason if best else "; ".join(f"{v.family}: {v.reason}" for v in verdicts)
        batch = self.journal.append_all([  # one write: a crash never leaves a refit without its decision
            *(("estimate", {"family": v.family, "n_outcomes": n_outcomes, **v.result.to_dict()}) for v in verdicts),
            ("refit", {"n_outcomes": n_outcomes, "n_train": verdicts[0].n_train, "n_holdout": verdicts[0].result.n,
                       "families": [v.family for v in verdicts], "fit_s": round(sum(v.fit_s for v in verdicts), 3)}),
            ("decision", {"n_outcomes": n_outcomes, "action": "promote" if best else "keep", "reason": reason,
                          "bundle": bundle_path, "family": best.family if best else None}),
        ])
        explore = [self._explore(live, data)] if s.explore_budget is not None else []
        events += batch[: len(verdicts)] + explore + batch[len(verdicts):]  # estimates, explore, refit, decision
        if bundle_path is not None:
            events += self._promote(bundle_path, "refit")
        return events

    # ------------------------------------------------------------------ shadow exploration
    def _shadow_step(self, log, state, n_outcomes: int) -> list[dict]:
        """Gate the installed shadow on the decisions since it first served (promote it when it passes),
        then install a fresh refit as the shadow when there is none, it passed, or its looks are spent. A
        look waits until the shadow's window holds the schedule's ``every_outcomes`` decisions with an
        outcome (a refit that took long leaves the window short when the schedule falls due)."""
        from recroute.loop.shadow import look_alpha, shallow_promotion

        s = self.settings
        live = self.bundle(state.live_bundle)
        has = log["outcome"].notna().to_numpy()
        events: list[dict] = []
        current = state.shadow
        replace, promote, gate_rows, retune = current is None, None, [], None
        if current is not None:
            shadow = self.bundle(current["bundle"])
            served = log.loc[has, "shadow_checksum"].to_numpy(dtype=object) if "shadow_checksum" in log.columns else None
            since = None if served is None else next((i for i, c in enumerate(served) if c == current["checksum"]), None)
            window = 0 if since is None else int(has.sum()) - since
            if shadow.llm_names == live.llm_names and window < (s.schedule.every_outcomes or 2):
                return events  # too few decisions since the shadow first served: wait for them (journal nothing)
        data = log_data(log, live)
        if current is not None:
            gateable = since is not None and 0 < since < len(data.bandit) - 1
            look = 1 + shadow_looks(self.journal.events(), current["checksum"]) if gateable else 0
            if shadow.llm_names != live.llm_names:  # the pool changed (an onboarding): a fresh shadow
                replace = True
            elif gateable and look > s.shadow_looks:  # its looks spent (a journal from before "retire")
                replace = True
            elif gateable:
                level = look_alpha(s.alpha, look, s.shadow_looks)
                stages, chosen = [], None
                try:
                    data.logging = shadow_logging(log.loc[has], data, since, self._routers(state))
                    stages, chosen = shallow_promotion(
                        served_policy(shadow.router, live.router, current["tau"]),
                        shadow.router if current["tau"] > 0 else None, live.router, data, since, level, s.margin,
                        s.reward_router, self.seed, anchor=self._anchor(live) if s.anchor_reward else None)
                    for st in stages:  # the plain refit's row only when the conservative one passed
                        gate_rows.append(("estimate", {"family": router_spec(shadow.router), "n_outcomes": n_outcomes,
                                                       "shadow": current["checksum"], "look": look, "level": level,
                                                       "since": since, "stage": st.stage, **st.result.to_dict()}))
                    ok = chosen is not None
                    reason = stages[0].reason if len(stages) == 1 else "; ".join(f"{st.stage}: {st.reason}"
                                                                                  for st in stages)
                    if chosen is not None and chosen.stage == "plain":
                        reason += " (both passed at the look's level: the plain refit promoted, live stays one level)"
                except DataError as exc:  # the log cannot support a gate (journalled; the shadow is replaced)
                    ok, reason = False, f"cannot gate the shadow: {exc}"
                    look = s.shadow_looks
                window_log = log.loc[has].iloc[since:]
                with_shadow = window_log["shadow_checksum"].notna().to_numpy()
                share = float(np.mean(window_log["chosen"].to_numpy()[with_shadow]
                                      != window_log["live_choice"].to_numpy()[with_shadow])) if with_shadow.any() else None
                gate_rows.append(("explore", {"share": share, "budget": s.explore_budget, "n": int(with_shadow.sum())}))
                gate_rows.append(("decision", {"n_outcomes": n_outcomes, "action": "promote" if ok else "keep",
                                               "reason": reason, "bundle": current["bundle"], "kind": "shadow",
                                               "look": look, "stage": chosen.stage if ok else None}))
                promote = current["bundle"] if ok else None  # tau 0, or the plain refit passed: the shadow's bundle
                if ok and chosen.stage == "conservative":  # only the conservative policy over live passed: promote it
                    promote = str(self.save_bundle(chosen.router, live, f"conservative-{n_outcomes}"))
                    gate_rows[-1][1]["promote_bundle"] = promote  # the decision names the bundle it promotes
                replace = ok or look >= s.shadow_looks
                gate_rows[-1][1]["retire"] = replace  # the decision: the next step fits a fresh shadow
                if not replace and with_shadow.any():
                    retune = retuned_epsilon(window_log[with_shadow], current["epsilon"], s.explore_budget, s.shadow_cap)
        events += self.journal.append_all([*gate_rows, ("refit", {
            "n_outcomes": n_outcomes, "n_train": len(data.bandit) if replace else 0, "explore": "shadow",
            "gated": bool(gate_rows), "fitted": replace})])
        if current is not None and not replace and promote is None and gate_rows and retune is not None:
            events += self._install_shadow(current["bundle"], retune, current["tau"], "retune")
        if promote is not None:
            events += self._promote(promote, "refit")
            state = self.journal.state()
            if state.live_bundle != promote:  # refused: the shadow stays until its looks are spent
                return events
            live = self.bundle(state.live_bundle)
        if replace:
            events += self._fit_shadow(live, data, n_outcomes)
        return events

    def _fit_shadow(self, live, data: LogData, n_outcomes: int) -> list[dict]:
        """A refit on every logged decision (the first family), saved and installed as the shadow with
        ε = ``shadow.first_epsilon``: budget / d (at most cap), d the larger of the served policy's
        disagreement with live on the most recent ``holdout`` decisions and that of the same form refitted
        without them, plus one standard error (``shadow.first_disagreement``: the shadow trained on them)."""
        from recroute.loop.shadow import first_disagreement, first_epsilon

        s = self.settings
        spec = (s.families or (refit_family(live.router),))[0]
        anchor = self._anchor(live)

        def fit(bandit):
            return fit_candidate(spec, bandit, data.X, anchor, s.reward_router, seed=self.seed,
                                 anchor_reward=s.anchor_reward)

        start = time.perf_counter()
        candidate = fit(data.bandit)
        fit_s = time.perf_counter() - start
        d = first_disagreement(live.router, served_policy(candidate, live.router, s.shadow_tau), data.bandit, data.X,
                               s.holdout, lambda bandit: served_policy(fit(bandit), live.router, s.shadow_tau))
        eps = first_epsilon(d, s.explore_budget, s.shadow_cap)
        path = str(self.save_bundle(candidate, live, f"shadow-{n_outcomes}"))
        logger.info("shadow %s fitted in %.1f s, epsilon %.4f (disagreement %s), tau %.3g", path, fit_s, eps, d,
                    s.shadow_tau)
        return self._install_shadow(path, eps, s.shadow_tau, "refit", disagreement=d)

    def _install_shadow(self, path: str, epsilon: float, tau: float, kind: str, resumed: bool = False,
                        disagreement: dict | None = None) -> list[dict]:
        from recroute.serve.bundle import bundle_checksum

        extra = {} if disagreement is None else {"disagreement": disagreement}  # the estimates ε was set from
        events = [] if resumed else [self.journal.append("shadowing", bundle=path, epsilon=epsilon, tau=tau, kind=kind,
                                                         **extra)]
        try:
            response = self.shadow_client.install(path, epsilon, tau)
        except PromotionError as exc:
            if not exc.refused:
                raise  # no answer: still pending, retried at the next step
            logger.warning("shadow refused: %s", exc)
            return events + [self.journal.append("shadow_refused", bundle=path, kind=kind, reason=str(exc))]
        checksum = (response.get("shadow") or {}).get("checksum") or bundle_checksum(Path(path))
        events.append(self.journal.append("shadow", bundle=path, checksum=checksum, epsilon=epsilon, tau=tau,
                                          kind=kind, response=response, resumed=resumed))
        return events

    def _restore_shadow(self, state) -> list[dict]:
        """Finish an install the journal says was started; put the journal's shadow back on a gateway
        that serves another (a restarted gateway serves none)."""
        if state.shadow_pending is not None:
            p = state.shadow_pending
            return self._install_shadow(p["bundle"], p["epsilon"], p["tau"], p["kind"], resumed=True)
        if state.shadow is None:
            return []
        answered, checksum = self.shadow_client.serving()
        if not answered or checksum == state.shadow["checksum"]:
            return []
        sh = state.shadow
        return self._install_shadow(sh["bundle"], sh["epsilon"], sh["tau"], "restore")

    def run(self, poll_s: float = 5.0, max_steps: int | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Step every ``poll_s`` seconds until ``max_steps`` or ``stop()``; a failed step is logged, not fatal."""
        steps = 0
        while (max_steps is None or steps < max_steps) and not (stop and stop()):
            try:
                self.step()
            except (DataError, PromotionError, OSError) as exc:
                logger.warning("loop step failed: %s", exc)
            steps += 1
            time.sleep(poll_s)

    # ------------------------------------------------------------------ pieces
    def save_bundle(self, router, live, name: str) -> Path:
        """The router saved as a bundle with the live bundle's encoder under workdir/bundles/NAME.

        Its prices are live's, and for an LLM live has no price for (one onboarded) the upstreams
        file's (none when some LLM is left unpriced); its costs stay "predicted" when live's were and the router predicts costs, else they
        come from those prices (a refit from the log learns no cost edges: journalled as ``costs``)."""
        from recroute.serve.bundle import RoutingBundle

        names = [str(n) for n in router.llm_names_]
        fallback = self.upstream_prices(names)
        prices = fallback if live.prices is None else live.prices.over(names, fallback)
        if prices is not None and not prices.priced.all():
            prices = None  # a bundle prices every LLM or none: the gateway then takes the upstreams file's
        costs = "predicted" if live.costs == "predicted" and getattr(router, "predicts_costs", False) else "prices"
        if costs != live.costs:
            self.journal.append("costs", bundle=name, live_costs=live.costs, costs=costs,
                                reason="the router does not predict costs: its costs come from the prices")
        path = self.workdir / "bundles" / name
        RoutingBundle.build(router, live.encoder, prices, costs).save(path)
        return path.resolve()

    def upstream_prices(self, names: list[str]):
        """The upstreams file's per-token prices over ``names`` (None without a file or any price)."""
        import os
        import tomllib

        from recroute.serve.gateway import upstream_prices
        from recroute.serve.upstreams import parse_upstreams

        if self.upstreams_path is None or not self.upstreams_path.is_file():
            return None
        try:
            doc = tomllib.loads(self.upstreams_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"{self.upstreams_path}: cannot read the upstreams file ({exc})") from None
        upstreams, _ = parse_upstreams(doc, list(doc.get("upstreams") or {}), str(self.upstreams_path), os.environ)
        return upstream_prices(names, upstreams)

    def _routers(self, state) -> dict:
        """bundle checksum -> router of every bundle the loop served (the start and each promotion): the
        routers whose decisions the log holds, for the gate's logging probabilities."""
        from recroute.serve.bundle import bundle_checksum

        start = next(e["live_bundle"] for e in self.journal.events() if e["event"] == "start")
        out = {}
        for path in dict.fromkeys([start, *(p["bundle"] for p in state.promotions)]):
            try:
                out[bundle_checksum(Path(path))] = self.bundle(path).router
            except (OSError, RecrouteError) as exc:  # a bundle removed since: its decisions' probabilities stay unknown
                logger.warning("bundle %s: %s", path, exc)
        return out

    def _promote(self, bundle_path: str, kind: str, resumed: bool = False) -> list[dict]:
        events = [] if resumed else [self.journal.append("promoting", bundle=bundle_path, kind=kind)]
        try:
            response = self.promote_fn(bundle_path)
        except PromotionError as exc:
            if not exc.refused:
                raise  # no answer: still pending, retried at the next step
            logger.warning("promotion refused: %s", exc)
            return events + [self.journal.append("refused", bundle=bundle_path, kind=kind, reason=str(exc))]
        events.append(self.journal.append("promoted", bundle=bundle_path, kind=kind, response=response, resumed=resumed))
        return events

    def _anchor(self, live) -> Anchor | None:
        from recroute.loop.refit import anchor_from_dataset

        if self.anchor_data is None:
            return None
        anchor = anchor_from_dataset(self.anchor_data, live)
        for llm, ev in self.journal.state().onboarded.items():  # the probes answered by onboarded LLMs
            if ev.get("placed") and llm in anchor.llm_names:
                anchor.Y[np.asarray(ev["rows"], dtype=np.int64), anchor.llm_names.index(llm)] = ev["results"]
        return anchor

    def _explore(self, live, data: LogData) -> dict:
        from recroute.loop.exploration import off_greedy_share

        _, hold = split_recent(len(data.bandit), self.settings.holdout)
        if data.bundle_checksums is not None:  # only the decisions the live bundle made
            from recroute.serve.bundle import bundle_checksum

            hold = hold[data.bundle_checksums[hold] == bundle_checksum(Path(self.journal.state().live_bundle))]
        recent = data.bandit.take(hold)
        scores = scores_among(live.router, None if data.X is None else data.X[recent.rows], recent.allowed, len(recent))
        share = off_greedy_share(recent, scores) if len(recent) else float("nan")
        if share > self.settings.explore_budget:
            logger.warning("off-greedy share %.4f is above the exploration budget %.4f", share, self.settings.explore_budget)
        return self.journal.append("explore", share=share, budget=self.settings.explore_budget, n=len(recent))

    def new_llms(self, state) -> list[str]:
        """LLMs of the upstreams file that the live bundle does not route to and that were not onboarded."""
        import tomllib

        try:
            doc = tomllib.loads(self.upstreams_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"{self.upstreams_path}: cannot read the upstreams file ({exc})") from None
        known = set(self.bundle(state.live_bundle).llm_names) | set(state.onboarded)
        return [name for name in (doc.get("upstreams") or {}) if name not in known]

    def _onboard(self, llm: str, live) -> list[dict]:
        if self.anchor_data is None:
            raise DataError(f"new LLM {llm!r} in {self.upstreams_path}: onboarding needs the anchor set (--anchor)")
        anchor = self._anchor(live)
        answer = self.answer or probe_answer(self.upstreams_path, self.anchor_data)
        s = self.settings
        result = onboard_llm(live.router, anchor, llm, lambda row: answer(llm, row), s.probe_budget, self._logged_X(live),
                             min_probes=s.min_probes, probe_every=s.probe_every, alpha=s.alpha, margin=s.onboard_margin,
                             min_support=s.onboard_min_support, seed=self.seed, design=s.onboard_design)
        bundle_path = None
        if result.placed is not None:
            bundle_path = str(self.save_bundle(result.placed, live, f"onboard-{_safe(llm)}"))
        events = [self.journal.append(
            "onboard", llm=llm, probes=result.probes, placed=bundle_path is not None, rows=result.rows.tolist(),
            results=result.results.tolist(), bundle=bundle_path, reason=result.reason,
            **({} if result.gate is None else {"gate": result.gate.to_dict()}))]
        if bundle_path is not None:
            events += self._promote(bundle_path, "onboard")
        return events


    def _logged_X(self, live) -> np.ndarray | None:
        """float32 (n, d) features of the logged prompts (placed with the anchor's), None without a log."""
        from recroute.feedback.logs import read_decision_log

        if not self.log_path.is_file() or not live.router.needs_features:
            return None
        log = read_decision_log(self.log_path)
        return log_data(log, live).X if log["outcome"].notna().any() else None


def retuned_epsilon(window, epsilon: float, budget: float, cap: float = 0.5, tolerance: float = 0.02) -> float | None:
    """The shadow's ε set again from the decisions it served (``window``: log rows with ``live_choice``
    and ``shadow_choice``): min(cap, budget / d), d the share where the two differed there; None when that
    is within ``tolerance`` (relative) of ``epsilon``. The first ε (``shadow.first_epsilon``) is set before
    the shadow serves, from estimates of d on recent logged prompts; this sets it from what was served.
    Each decision logs its own ε, so a new ε mid-window keeps the rebuilt design exact."""
    from recroute.loop.shadow import retune_epsilon

    if len(window) == 0:
        return None
    d = float(np.mean(window["live_choice"].to_numpy() != window["shadow_choice"].to_numpy()))
    return retune_epsilon(d, epsilon, budget, cap, tolerance)


def served_policy(shadow_router, live_router, tau: float):
    """The policy a shadow installed with ``tau`` serves and the gate tests: the shadow's router itself at
    tau 0 (its greedy choice), else ``ConservativeRouter(shadow, live, tau)`` (live's choice unless the
    shadow's beats it by more than tau, among each decision's candidates), which a passed gate promotes."""
    from recroute.routers.conservative import ConservativeRouter

    return shadow_router if tau == 0 else ConservativeRouter(shadow_router, live_router, tau)


def shadow_logging(log, data: LogData, since: int, routers: dict) -> np.ndarray:
    """float64 (n, m) logging probabilities of the decisions at positions >= ``since`` of ``data`` (NaN
    before: not used), rebuilt from the log (``log``: its rows with an outcome, aligned with ``data``): a
    decision served with a shadow from its logged live and shadow choices and ε
    (``logged_shadow_probabilities``); one without, under a deterministic policy, one-hot at its choice;
    under a stochastic one, from its bundle's router (``routers``: checksum -> router) and its policy.
    DataError naming the decision when it cannot be rebuilt. ``gate.check_logging`` then checks every
    rebuilt probability of a logged choice against its logged propensity."""
    import pandas as pd

    from recroute.feedback.policies import parse_policy
    from recroute.loop.shadow import logged_shadow_probabilities

    bandit = data.bandit
    n, m = len(bandit), bandit.n_llms
    P0 = np.full((n, m), np.nan)
    at = np.arange(since, n)
    frame = log.iloc[since:]
    shadowed = (frame["shadow_checksum"].notna().to_numpy() if "shadow_checksum" in frame.columns
                else np.zeros(len(at), dtype=bool))
    if shadowed.any():
        rows = at[shadowed]
        names = pd.Index([str(name) for name in bandit.llm_names])
        live_j, shadow_j = (names.get_indexer(frame.loc[shadowed, key].astype(str))
                            for key in ("live_choice", "shadow_choice"))
        unknown = np.flatnonzero((live_j < 0) | (shadow_j < 0))
        if len(unknown):
            i = unknown[0]
            bad = frame.loc[shadowed, "live_choice" if live_j[i] < 0 else "shadow_choice"].iloc[i]
            raise DataError(f"decision {rows[i]}: a logged live or shadow choice {str(bad)!r} is not an LLM of the live "
                            "bundle")
        P0[rows] = logged_shadow_probabilities(live_j, shadow_j, bandit.allowed[rows],
                                               frame.loc[shadowed, "shadow_epsilon"].to_numpy(dtype=np.float64))
    rest = np.flatnonzero(~shadowed)
    if not len(rest):
        return P0
    specs = frame["policy"].to_numpy(dtype=object)[rest] if "policy" in frame.columns else np.full(len(rest), None)
    specs = np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in specs], dtype=object)
    checksums = (frame["bundle_checksum"].to_numpy(dtype=object)[rest] if "bundle_checksum" in frame.columns
                 else np.full(len(rest), None, dtype=object))
    for spec in dict.fromkeys(specs):  # one parse per policy, one scoring per (policy, bundle)
        group = rest[specs == spec]
        try:
            policy = parse_policy(spec)
        except ValueError as exc:
            raise DataError(f"decision {at[group[0]]}: {exc}") from None
        if policy.deterministic:
            pos = at[group]
            P0[pos] = 0.0
            P0[pos, bandit.chosen[pos]] = 1.0
            continue
        keys = np.array([None if c is None else str(c) for c in checksums[specs == spec]], dtype=object)
        for key in dict.fromkeys(keys):
            pos = at[group[keys == key]]
            router = routers.get(key)
            if router is None:
                raise DataError(f"decision {pos[0]}: made by a bundle the loop does not know, under the stochastic "
                                f"policy {spec}")
            x = None if data.X is None or not router.needs_features else data.X[bandit.rows[pos]]
            allowed = bandit.allowed[pos]
            P0[pos] = policy.probabilities(scores_among(router, x, allowed, len(pos)), allowed)
    return P0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def probe_answer(upstreams_path: str | Path, anchor_data, timeout_s: float = 60.0) -> Answer:
    """(llm, anchor row) -> 1.0 when the LLM's reply to the anchor prompt's text equals the prompt's
    ``reference`` (stripped, case-folded), else 0.0: the exact-match scorer, sent straight to the LLM's
    upstream (probes are not user traffic and are not logged as decisions)."""
    import os
    import tomllib

    import httpx

    from recroute.serve.upstreams import parse_upstreams

    prompts = anchor_data.prompts
    if "reference" not in prompts.columns:
        raise DataError("the anchor set's prompts need a 'reference' column for the exact-match probe scorer")
    doc = tomllib.loads(Path(upstreams_path).read_text(encoding="utf-8"))
    upstreams, _ = parse_upstreams(doc, list(doc.get("upstreams") or {}), str(upstreams_path), os.environ)
    texts, refs = list(anchor_data.texts), prompts["reference"].astype(str).tolist()

    def answer(llm: str, row: int) -> float:
        up = upstreams[llm]
        headers = {"authorization": f"Bearer {up.api_key}"} if up.api_key else {}
        body = {"model": up.model, "messages": [{"role": "user", "content": texts[row]}]}
        response = httpx.post(up.chat_url, json=body, headers=headers, timeout=timeout_s)
        response.raise_for_status()
        reply = response.json()["choices"][0]["message"]["content"] or ""
        return float(reply.strip().casefold() == refs[row].strip().casefold())

    return answer
