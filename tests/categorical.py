"""Checks shared by the categorical-response tests (ordinal, multinomial)."""

from __future__ import annotations

import pandas as pd


def check_simulated_categories(res, y: pd.Series, levels: list[str], nsim: int,
                               ordered: bool) -> None:
    """``res.simulate`` draws the response's categories (an ordered categorical when
    ``ordered``), reproducibly from the seed, with pooled frequencies within 0.03 of
    the observed ones."""
    sims = res.simulate(nsim=nsim, seed=1)
    assert isinstance(sims, pd.DataFrame) and sims.shape == (len(y), nsim)
    for col in sims.columns:
        s = sims[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            assert [str(c) for c in s.cat.categories] == levels
            assert s.cat.ordered or not ordered
        assert set(s.astype(str)) <= set(levels), set(s.astype(str))
    again = res.simulate(nsim=nsim, seed=1)
    assert sims.astype(str).equals(again.astype(str))
    assert not sims.astype(str).equals(res.simulate(nsim=nsim, seed=2).astype(str))
    pooled = pd.Series(sims.astype(str).to_numpy().ravel()).value_counts(normalize=True)
    freq = y.value_counts(normalize=True)
    for level in levels:
        assert abs(pooled.get(level, 0.0) - freq[level]) < 0.03, (level, pooled, freq)
