"""Grouping structure and covariates: who belongs to which group, and x, z."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._scenario import Scenario


@dataclass(frozen=True)
class Layout:
    """Integer codes of the grouping factors, one entry per observation.

    ``g`` indexes groups ``0..n_groups-1`` (observations sorted by group);
    ``g2`` indexes the cluster (nested) or the second factor (crossed), else None.
    """

    sizes: np.ndarray
    g: np.ndarray
    g2: np.ndarray | None

    @property
    def nobs(self) -> int:
        return int(self.g.size)


def draw_sizes(s: Scenario, rng: np.random.Generator) -> np.ndarray:
    """Group sizes; each distribution has mean ``group_size``."""
    if s.size_dist == "balanced":
        return np.full(s.n_groups, s.group_size, dtype=np.int64)
    lo = s.min_group_size
    if s.size_dist == "uniform":
        return rng.integers(lo, 2 * s.group_size - lo, size=s.n_groups, endpoint=True)
    # geometric: lo + (count of failures before a success), mean group_size - lo
    p = 1.0 / (1.0 + s.group_size - lo)
    return lo + rng.geometric(p, size=s.n_groups) - 1


def draw_layout(s: Scenario, rng: np.random.Generator) -> Layout:
    sizes = draw_sizes(s, rng)
    g = np.repeat(np.arange(s.n_groups), sizes)
    g2 = None
    if s.design == "nested":
        # contiguous blocks of groups, as even as n_groups / n_groups2 allows
        cluster_of_group = np.arange(s.n_groups) * s.n_groups2 // s.n_groups
        g2 = cluster_of_group[g]
    elif s.design == "crossed":
        # every level of h appears floor(N / n_groups2) or one more times
        g2 = rng.permutation(np.arange(g.size) % s.n_groups2)
    return Layout(sizes=sizes, g=g, g2=g2)


def draw_covariates(s: Scenario, layout: Layout, rng: np.random.Generator) -> dict:
    """Observation-level ``x`` and, when the scenario has ``beta_z``, group-level ``z``."""
    if s.smooth is not None:
        x = rng.uniform(0.0, 1.0, size=layout.nobs)
    else:
        x = rng.standard_normal(layout.nobs)
    out = {"x": x}
    if s.beta_z is not None:
        out["z"] = rng.standard_normal(s.n_groups)[layout.g]
    return out


def level_labels(prefix: str, n: int) -> list[str]:
    """``prefix`` plus a zero-padded 1-based number, so labels sort naturally."""
    width = max(2, len(str(n)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, n + 1)]
