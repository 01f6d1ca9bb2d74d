"""Parametric bootstrap of a fitted model (lme4's ``bootMer(type = "parametric",
use.u = FALSE)``).

Each replicate draws a response from the fitted model with new random effects
(``GLMMResult.simulate``) and refits the same model to it (``glmmbench.fit.refit``:
the same design, family, ``nagq`` and ``reml``). Replicate ``i`` draws from its own
generator, ``numpy.random.SeedSequence(seed).spawn(nsim)[i]``, so the table depends on
the seed alone: not on the order the replicates run in, nor on where (this process,
local processes, a Dask cluster).

A refit that fails is kept as a row of NaNs with its error message; the table's
``attrs["nfailed"]`` counts them and a `BootstrapWarning` says how many there were.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from glmmbench.errors import GLMMError
from glmmbench.inference.profile import interval_columns, sdcor_names, theta_to_sdcor

if TYPE_CHECKING:
    from glmmbench.results import GLMMResult

__all__ = ["bootstrap", "estimates", "percentile_interval", "replicates_needed",
           "BootstrapWarning"]


class BootstrapWarning(UserWarning):
    """Some bootstrap refits failed (they are rows of NaNs with their message), or too
    few replicates for a percentile interval at the level asked (`confint_boot`)."""


def estimates(res: GLMMResult) -> pd.Series:
    """The parameters a bootstrap replicate reports, named as lme4's ``confint``:
    ``.sig01, ...`` (random-effect sds and correlations), ``.sigma`` (LMMs), the fixed
    effects."""
    d = res.design
    scale = res.sigma if res.is_lmm else 1.0
    values = np.concatenate([theta_to_sdcor(res.theta, d.cov_blocks, scale),
                             [res.sigma] if res.is_lmm else [], res.fixef.to_numpy()])
    return pd.Series(values, index=sdcor_names(d, res.is_lmm) + list(res.fixef.index))


def _replicate(res: GLMMResult, seed: np.random.SeedSequence) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    try:
        boot = res.refit(res.simulate(1, rng).iloc[:, 0])
    except ValueError as e:  # GLMMError (NumericalError included) and numpy's own
        return {"loglik": np.nan, "converged": False, "error": f"{type(e).__name__}: {e}"}
    row = estimates(boot).to_dict()
    row.update(loglik=boot.loglik, converged=boot.converged, error="")
    return row


_WORKER_RESULT: list = []


def _init_worker(res: GLMMResult) -> None:
    _WORKER_RESULT[:] = [res]


def _worker_replicate(seed: np.random.SeedSequence) -> dict[str, Any]:
    return _replicate(_WORKER_RESULT[0], seed)


def bootstrap(res: GLMMResult, nsim: int, seed: int | None = None,
              workers: int | Any | None = None) -> pd.DataFrame:
    """``nsim`` parametric bootstrap replicates, one row each: the parameters of
    `estimates`, ``loglik``, ``converged`` and ``error`` (empty unless the refit failed).

    ``workers``: None runs in this process; an integer runs on that many local
    processes (spawned); a ``dask.distributed.Client`` runs on its cluster.
    """
    if isinstance(nsim, bool) or not isinstance(nsim, int | np.integer) or nsim < 1:
        raise GLMMError(f"nsim must be a positive integer, not {nsim!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)
                             or seed < 0):
        raise GLMMError(f"seed must be an integer >= 0 or None, not {seed!r}")
    seeds = np.random.SeedSequence(seed).spawn(int(nsim))
    if workers is None:
        rows = [_replicate(res, s) for s in seeds]
    elif isinstance(workers, int | np.integer) and not isinstance(workers, bool):
        if workers < 1:
            raise GLMMError(f"workers must be a positive integer, not {workers}")
        with ProcessPoolExecutor(int(workers), mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(res,)) as pool:
            rows = list(pool.map(_worker_replicate, seeds,
                                 chunksize=max(1, len(seeds) // (4 * int(workers)))))
    elif hasattr(workers, "map") and hasattr(workers, "scatter"):  # dask.distributed
        shared = workers.scatter(res, broadcast=True)
        futures = workers.map(_replicate, [shared] * len(seeds), seeds, pure=False)
        rows = workers.gather(futures)
    else:
        raise GLMMError("workers must be None, a number of local processes or a "
                        f"dask.distributed Client, not {type(workers).__name__}")
    columns = [*estimates(res).index, "loglik", "converged", "error"]
    table = pd.DataFrame(rows, columns=columns)
    table.index.name = "sim"
    nfailed = int((table["error"] != "").sum())
    table.attrs.update(nsim=int(nsim), nfailed=nfailed, seed=seed)
    if nfailed:
        first = table.loc[table["error"] != "", "error"].iloc[0]
        warnings.warn(f"{nfailed} of {nsim} bootstrap refits failed (first: {first})",
                      BootstrapWarning, stacklevel=2)
    return table


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The bootstrap percentile interval as R's ``boot.ci(type = "perc")`` takes it
    (lme4's ``confint(method = "boot")``): the order statistics at ``(R + 1) a``,
    interpolated on the normal quantile scale between neighbours (``boot:::norm.inter``);
    failed replicates (NaN) are left out."""
    t = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    R = t.size
    if R == 0:
        return (np.nan, np.nan)
    out = []
    for a in ((1 - level) / 2, (1 + level) / 2):
        rk = (R + 1) * a
        k = int(np.floor(rk))
        if np.isclose(rk, k):
            out.append(t[min(max(k, 1), R) - 1])
        elif k == 0:
            out.append(t[0])
        elif k >= R:
            out.append(t[-1])
        else:
            lo, hi = stats.norm.ppf(k / (R + 1)), stats.norm.ppf((k + 1) / (R + 1))
            w = (stats.norm.ppf(a) - lo) / (hi - lo)
            out.append(t[k - 1] + w * (t[k] - t[k - 1]))
    return tuple(out)


def replicates_needed(level: float) -> int:
    """The fewest replicates whose percentile interval at ``level`` has order
    statistics inside the sample at both ends: ``(R + 1) (1 - level) / 2 >= 1``.
    With fewer, boot's ``norm.inter`` takes the extreme replicates as the limits
    (with a warning), and the interval does not have the level asked."""
    return int(np.ceil(2.0 / (1.0 - level) - 1.0 - 1e-9))


def confint_boot(res: GLMMResult, level: float, parm: list[str], nsim: int,
                 seed: int | None, workers: Any = None) -> pd.DataFrame:
    """Percentile intervals from `bootstrap`.

    Fewer than two successful replicates is a `GLMMError` (an interval of one value
    has width 0; lme4 stops: "All values of t are equal"). Fewer than
    `replicates_needed` (39 at the 95 % level) gives the extreme replicates as limits,
    and a parameter whose replicates are all equal a zero-width interval: each with a
    `BootstrapWarning`, as boot's warning about extreme order statistics."""
    if isinstance(nsim, bool) or not isinstance(nsim, int | np.integer) or nsim < 1:
        raise GLMMError(f"nsim must be a positive integer, not {nsim!r}")
    needed = replicates_needed(level)
    if nsim < 2:
        raise GLMMError(f"confint(method='boot') with nsim={nsim}: a percentile interval "
                        f"needs at least 2 bootstrap replicates (one replicate gives an "
                        f"interval of width 0), and {needed} for limits inside the "
                        f"replicates at level {level:g}")
    table = bootstrap(res, nsim, seed=seed, workers=workers)
    ok = int((table["error"] == "").sum())
    if ok < 2:
        raise GLMMError(f"confint(method='boot'): only {ok} of {nsim} bootstrap refits "
                        "succeeded; a percentile interval needs at least 2 (first error: "
                        f"{table.loc[table['error'] != '', 'error'].iloc[0]})")
    if ok < needed:
        warnings.warn(f"confint(method='boot'): {ok} successful bootstrap replicate(s) are "
                      f"too few for level {level:g}: the limits are the extreme replicates "
                      f"and the intervals are narrower than the level asked; use nsim >= "
                      f"{needed} (lme4's boot.ci: 'extreme order statistics used as "
                      "endpoints')", BootstrapWarning, stacklevel=3)
    rows = []
    for name in parm:
        values = table[name].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size >= 2 and np.all(finite == finite[0]):
            warnings.warn(f"confint(method='boot'): all {finite.size} replicates of {name} "
                          f"equal {finite[0]:g}: its interval has width 0 (boot.ci stops "
                          "here: 'All values of t are equal')", BootstrapWarning,
                          stacklevel=3)
        rows.append(percentile_interval(values, level))
    return pd.DataFrame(rows, index=parm, columns=interval_columns(level))
