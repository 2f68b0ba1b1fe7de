"""The shared fit-size check: each family's declared limit, combined for routers built from others."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.errors import DataError, FitTooLargeError
from recroute.routers.base import FIT_LIMIT_ENV, Router, check_fit_size, combined_cell_limit
from recroute.routers.registry import available_routers, make_router, router_class


class _Tiny(Router):
    """A feature-free router that fits at most 12 cells."""

    name = "tiny"
    needs_features = False
    max_fit_cells = 12.0

    def _fit(self, Y, X):
        self.means_ = np.nanmean(Y, axis=0)

    def _score(self, X, n):
        return np.tile(self.means_, (n, 1))


def test_refuses_a_training_matrix_above_the_limit_naming_the_size_it_can_take(monkeypatch):
    monkeypatch.delenv(FIT_LIMIT_ENV, raising=False)
    _Tiny().fit(np.ones((4, 3)))  # 12 cells: at the limit
    with pytest.raises(FitTooLargeError, match=r"at most 12 cells .* e\.g\. 4 prompts × 3 LLMs; got 5 × 3 = 15") as info:
        _Tiny().fit(np.ones((5, 3)))
    assert info.value.can_take == "12 cells"
    assert issubclass(FitTooLargeError, DataError)


def test_a_subclass_family_does_not_inherit_its_parents_limit():
    class _Wider(_Tiny):
        name = "wider"

    assert _Tiny().fit_cell_limit() == 12.0 and _Wider().fit_cell_limit() is None
    _Wider().fit(np.ones((50, 3)))


def test_the_environment_scales_or_disables_the_check(monkeypatch):
    monkeypatch.setenv(FIT_LIMIT_ENV, "2")
    _Tiny().fit(np.ones((8, 3)))  # 24 cells = 2 × 12
    with pytest.raises(FitTooLargeError, match="at most 24 cells"):
        _Tiny().fit(np.ones((9, 3)))
    monkeypatch.setenv(FIT_LIMIT_ENV, "off")
    _Tiny().fit(np.ones((100, 3)))
    monkeypatch.setenv(FIT_LIMIT_ENV, "lots")
    with pytest.raises(DataError, match=FIT_LIMIT_ENV):
        _Tiny().fit(np.ones((2, 3)))


def test_limits_scale_with_the_parameter_fit_time_is_linear_in():
    full = make_router("mlp").fit_cell_limit()
    assert full == router_class("mlp").max_fit_cells
    assert make_router("mlp:epochs=50").fit_cell_limit() == pytest.approx(2 * full)
    assert make_router("als:iterations=5").fit_cell_limit() == pytest.approx(3 * router_class("als").max_fit_cells)


def test_combined_limits_by_hand():
    assert combined_cell_limit([None, None]) is None
    assert combined_cell_limit([100.0, None]) == pytest.approx(100.0)
    assert combined_cell_limit([100.0, 300.0], [2, 3]) == pytest.approx(1 / (2 / 100 + 3 / 300))
    ensemble = make_router("ensemble:members=two_tower+knn,n_seeds=5")
    assert ensemble.fit_cell_limit() == pytest.approx(router_class("two_tower").max_fit_cells / 5)
    calibrated = make_router("ensemble:members=als,n_seeds=2,calibration='platt'")
    assert calibrated.fit_cell_limit() == pytest.approx(router_class("als").max_fit_cells / 4)
    assert make_router("debiased:inner=mlp,calibration='platt'").fit_cell_limit() == pytest.approx(
        router_class("mlp").max_fit_cells / 2)
    stack = make_router("stack:members=two_tower+mlp,n_seeds=2,refit=True")
    assert stack.fit_cell_limit() == pytest.approx(router_class("two_tower").max_fit_cells / 2 / 2)


def test_the_stack_keeps_the_members_that_fit_the_budget(monkeypatch):
    monkeypatch.delenv(FIT_LIMIT_ENV, raising=False)
    stack = make_router("stack:members=mlp+two_tower+logistic+best_single,n_seeds=1,refit=False")
    tt, mlp, lr = (router_class(n).max_fit_cells for n in ("two_tower", "mlp", "logistic"))
    assert stack.members_within_budget(int(lr / 2)) == ["mlp", "two_tower", "logistic", "best_single"]
    # RouterEval's size: mlp (6e7) and logistic (1.5e7) do not fit, two_tower (7e8) and best_single do
    assert stack.members_within_budget(24_000 * 8_500) == ["two_tower", "best_single"]
    # mlp alone fills 0.5 of the budget; two_tower then needs 0.043: both fit, logistic (2) does not
    assert stack.members_within_budget(int(mlp / 2)) == ["mlp", "two_tower", "best_single"]
    monkeypatch.setenv(FIT_LIMIT_ENV, "off")
    assert len(stack.members_within_budget(10**12)) == 4


def test_the_stack_leaves_out_a_member_whose_llm_limit_the_pool_exceeds(monkeypatch):
    """sw_ranking takes at most 300 LLMs (its max_fit_llms): a 1,000-LLM pool keeps the others, 300 keeps it."""
    monkeypatch.delenv(FIT_LIMIT_ENV, raising=False)
    stack = make_router("stack:members=sw_ranking+best_single,n_seeds=1,refit=False")
    assert router_class("sw_ranking").max_fit_llms == 300
    assert stack.members_within_budget(100 * 1000, n_llms=1000) == ["best_single"]
    assert stack.members_within_budget(100 * 300, n_llms=300) == ["sw_ranking", "best_single"]
    monkeypatch.setenv(FIT_LIMIT_ENV, "4")  # LLM limits scale by the square root: 600
    assert stack.members_within_budget(100 * 600, n_llms=600) == ["sw_ranking", "best_single"]


def test_a_refusing_family_refuses_before_any_work(monkeypatch):
    monkeypatch.delenv(FIT_LIMIT_ENV, raising=False)
    limit = make_router("mlp").fit_cell_limit()
    n_llms = 8500
    with pytest.raises(FitTooLargeError, match=r"router 'mlp' fits at most"):
        check_fit_size(make_router("mlp"), 24_000, n_llms)
    check_fit_size(make_router("mlp"), int(limit // n_llms), n_llms)


@pytest.mark.parametrize("name", available_routers())
def test_every_family_declares_a_positive_limit_or_none(name):
    limit = make_router(name).fit_cell_limit()
    assert limit is None or limit > 0


@pytest.mark.parametrize("name", [n for n in available_routers() if make_router(n).fit_cell_limit() is not None])
def test_each_family_refusing_routereval_size_names_the_size_it_takes(name, monkeypatch):
    """At 24,000 prompts × 8,500 LLMs a family either accepts or says how many cells it fits, as
    prompts of that pool (its limit // 8,500), before any work."""
    monkeypatch.delenv(FIT_LIMIT_ENV, raising=False)
    router = make_router(name)
    limit = router.fit_cell_limit()
    if limit >= 24_000 * 8_500:
        check_fit_size(router, 24_000, 8_500)
        return
    with pytest.raises(FitTooLargeError) as info:
        check_fit_size(router, 24_000, 8_500)
    assert f"at most {limit:,.0f} cells" in str(info.value)
    assert f"e.g. {int(limit // 8_500):,} prompts × 8,500 LLMs; got 24,000 × 8,500 = 204,000,000" in str(info.value)
    assert info.value.can_take == f"{limit:,.0f} cells"


def test_an_llm_count_limit_refuses_before_any_work_and_scales_with_the_environment(monkeypatch):
    monkeypatch.delenv(FIT_LIMIT_ENV, raising=False)
    with pytest.raises(FitTooLargeError, match="router 'sw_ranking' takes at most 300 LLMs .*; got 8,500") as info:
        check_fit_size(make_router("sw_ranking"), 24_000, 8_500)  # RouterEval's pool
    assert info.value.can_take == "300 LLMs"
    check_fit_size(make_router("sw_ranking"), 24_000, 300)
    monkeypatch.setenv(FIT_LIMIT_ENV, "4")  # n_llms² work: 4 × the budget takes 2 × the LLMs
    check_fit_size(make_router("sw_ranking"), 24_000, 600)
    with pytest.raises(FitTooLargeError, match="at most 600 LLMs"):
        check_fit_size(make_router("sw_ranking"), 24_000, 601)
    monkeypatch.setenv(FIT_LIMIT_ENV, "off")
    check_fit_size(make_router("sw_ranking"), 24_000, 8_500)
