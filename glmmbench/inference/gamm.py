"""Fitted smooths of a GAMM: coefficients, covariance, edf, smoothing parameters,
partial effects, approximate tests and plots.

A smooth ``f = X_s gamma`` enters the model as fixed null-space columns and a
random term ``b ~ N(0, sd^2 I)`` (``glmmbench.model.design.SmoothPart``), with
``gamma = T concat(beta_f, b)``. At the fit, with ``L`` the factor of

    M = [ Lambda' Z' W Z Lambda + I    Lambda' Z' W X ]
        [ X' W Z Lambda                X' W X         ]

(``W`` the working weights at the mode), the quantities mgcv reports are

- the Bayesian covariance of ``(beta, u)``: ``scale * M^{-1}`` (``scale = sigma^2``
  for a linear mixed model, 1 otherwise), mapped to ``gamma`` through
  ``b = theta u`` and ``T`` (mgcv's ``Vp``);
- the effective degrees of freedom, ``trace`` of the smooth's block of
  ``F = M^{-1} C' W C`` (``C = [Z Lambda, X]``): ``n_null + q - trace(M^{-1}_{uu})``
  (mgcv's ``edf``; the block trace does not depend on the parametrisation);
- the smoothing parameter ``lambda = phi / sd^2`` (mgcv's ``sp``: ``phi = sigma^2``
  for Gaussian responses, 1 otherwise), since the penalty ``lambda gamma' S gamma``
  is ``lambda b'b`` in the split.

Only the trailing block of ``M^{-1}`` is needed: the smooths are the last random
terms, so it comes from the trailing block of ``L`` (``BlockedCholesky.dense_tail``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg as sla
from scipy import stats

from glmmbench.engine.linalg import BlockedCholesky, ReIndex
from glmmbench.model.design import Design, SmoothPart

__all__ = ["FittedSmooth", "fitted_smooths", "smooth_table", "smooth_tests", "partial_effect",
           "default_grid", "plot_smooths"]

_GRID = 100  # points of a default grid
TEST_METHOD = ("Wald test of each smooth's values at the data against 0 with their "
               "Bayesian covariance, pseudo-inverted at rank round(edf) (Wood 2006, "
               "Generalized Additive Models, section 4.8.5); mgcv's default since 1.8 "
               "(Wood 2013) uses a fractional rank, so its p-values differ somewhat")


@dataclass(frozen=True)
class FittedSmooth:
    """One smooth at the fit: its coefficients ``gamma`` in mgcv's basis and their
    Bayesian covariance ``cov``; ``edf``, ``lam`` (mgcv's ``sp``) and ``sd`` (of the
    penalised coefficients ``b``)."""

    part: SmoothPart
    gamma: np.ndarray
    cov: np.ndarray
    edf: float
    lam: float
    sd: float

    @property
    def label(self) -> str:
        return self.part.label


def _theta_index(design: Design) -> list[int]:
    out, pos = [], 0
    for t in design.terms:
        out.append(pos)
        pos += t.ntheta
    return out


def fitted_smooths(design: Design, fac: BlockedCholesky, theta: np.ndarray, beta: np.ndarray,
                   u: np.ndarray, scale: float, phi: float
                   ) -> tuple[list[FittedSmooth], float, np.ndarray]:
    """Every smooth's ``FittedSmooth``, the model's total edf (``trace F``) and the
    Bayesian covariance of beta (``scale M^{-1}_{beta beta}``, mgcv's ``Vp`` block).

    ``fac`` is the factor of ``M`` including the fixed effects; ``scale`` multiplies
    ``M^{-1}`` (``sigma^2`` for an LMM, else 1); ``phi`` is the scale in ``lambda``.
    """
    offsets, tpos = design.term_bounds, _theta_index(design)
    m, p = u.size, beta.size
    start = offsets[design.smooths[0].term]
    Linv = sla.solve_triangular(fac.dense_tail(start), np.eye(m - start + p), lower=True)
    Minv = Linv.T @ Linv
    out = []
    for part in design.smooths:
        t = design.terms[part.term]
        th = float(theta[tpos[part.term]])
        uidx = offsets[part.term] - start + np.arange(t.q)
        kept = [i for i, j in enumerate(part.fixed) if j >= 0]
        fidx = np.array([m - start + part.fixed[i] for i in kept], dtype=np.intp)
        idx = np.concatenate([fidx, uidx])
        # (beta_f, b) with b = theta u; dropped null-space columns have coefficient 0
        D = np.concatenate([np.ones(fidx.size), np.full(t.q, th)])
        C = scale * Minv[np.ix_(idx, idx)] * np.outer(D, D)
        rows = np.concatenate([kept, part.nfixed + np.arange(t.q)]).astype(np.intp)
        x = np.zeros(part.nfixed + t.q)
        x[kept] = beta[[part.fixed[i] for i in kept]]
        x[part.nfixed:] = th * u[offsets[part.term]:offsets[part.term] + t.q]
        Cx = np.zeros((x.size, x.size))
        Cx[np.ix_(rows, rows)] = C
        edf = fidx.size + t.q - float(np.trace(Minv[np.ix_(uidx, uidx)]))
        sd = th * np.sqrt(scale)
        lam = phi / sd**2 if sd > 0 else np.inf
        out.append(FittedSmooth(part, part.T @ x, part.T @ Cx @ part.T.T, edf, lam, sd))
    Vbeta = scale * Minv[m - start:, m - start:]
    return out, _total_edf(design, fac), Vbeta


def _total_edf(design: Design, fac: BlockedCholesky) -> float:
    """``trace F = m + p - trace(M^{-1}_{uu})`` with ``M^{-1}_{uu} = (L_Z L_Z')^{-1} + G' G``
    (``BlockedCholesky.inverse_traces`` and ``fixed_rows``)."""
    G = fac.fixed_rows()
    m = int(design.term_bounds[-1])
    trace = float(fac.inverse_traces(ReIndex.from_design(design)).sum()) + float(np.sum(G * G))
    return m + G.shape[0] - trace


def smooth_table(fitted: list[FittedSmooth]) -> pd.DataFrame:
    """One row per smooth: ``term, bs, k, edf, lambda, sd`` (mgcv's label, basis,
    basis dimension, effective degrees of freedom, ``sp``)."""
    return pd.DataFrame({
        "term": [f.label for f in fitted],
        "bs": [f.part.smooth.bs for f in fitted],
        "k": [f.part.smooth.k for f in fitted],
        "edf": [f.edf for f in fitted],
        "lambda": [f.lam for f in fitted],
        "sd": [f.sd for f in fitted],
    })


def smooth_tests(fitted: list[FittedSmooth], residual_df: float | None) -> pd.DataFrame:
    """Approximate significance of each smooth (see ``TEST_METHOD``).

    The smooth's values at the data are ``f = X gamma`` with covariance ``X V X'``;
    with ``X = QR`` both live in the coordinates ``R gamma`` and ``R V R'``. With
    ``V_r^-`` the pseudo-inverse of ``R V R'`` keeping its ``r = round(edf)`` largest
    eigenvalues, ``T = (R gamma)' V_r^- (R gamma)``; ``p = P(chi2_r > T)``, or for an
    estimated scale (``residual_df`` given) ``P(F_{r, residual_df} > T / r)``.
    """
    rows = []
    for f in fitted:
        R = np.linalg.qr(f.part.smooth.X, mode="r")
        evals, evecs = np.linalg.eigh(R @ f.cov @ R.T)
        r = int(min(max(1, round(f.edf)), evals.size))
        keep = np.argsort(evals)[::-1][:r]
        proj = evecs[:, keep].T @ (R @ f.gamma)
        T = float(np.sum(proj**2 / evals[keep]))
        if residual_df is None:
            rows.append((f.label, f.edf, r, T, float(stats.chi2.sf(T, r))))
        else:
            rows.append((f.label, f.edf, r, T / r, float(stats.f.sf(T / r, r, residual_df))))
    stat = "Chi.sq" if residual_df is None else "F"
    return pd.DataFrame(rows, columns=["term", "edf", "Ref.df", stat, "p-value"]
                        ).set_index("term")


def default_grid(fs: FittedSmooth, data: pd.DataFrame, n: int = _GRID) -> pd.DataFrame:
    """``n`` points over the range of a 1-d smooth's covariate (its ``by`` level set)."""
    sm = fs.part.smooth
    if len(sm.variables) != 1:
        raise ValueError(f"smooth {sm.label} has {len(sm.variables)} covariates: give grid= "
                         "as a DataFrame with a column for each")
    var = sm.variables[0]
    x = data[var].to_numpy(dtype=float)
    if sm.by_level is not None:
        x = x[(data[sm.by] == sm.by_level).to_numpy()]
    grid = pd.DataFrame({var: np.linspace(np.nanmin(x), np.nanmax(x), n)})
    return _with_by(grid, fs, data)


def _with_by(grid: pd.DataFrame, fs: FittedSmooth, data: pd.DataFrame) -> pd.DataFrame:
    sm = fs.part.smooth
    if sm.by is None or sm.by in grid.columns:
        return grid
    grid = grid.copy()
    col = data[sm.by]
    if sm.by_level is not None:
        grid[sm.by] = pd.Categorical([sm.by_level] * len(grid), categories=col.cat.categories,
                                     ordered=col.cat.ordered)
    else:
        grid[sm.by] = 1.0  # a numeric by: the smooth per unit of it
    return grid


def partial_effect(fs: FittedSmooth, grid: pd.DataFrame, data: pd.DataFrame,
                   level: float = 0.95) -> pd.DataFrame:
    """The smooth's partial effect ``f(x) = X_s(x) gamma`` on ``grid`` with its standard
    error ``sqrt(diag(X_s V X_s'))`` and a pointwise ``level`` band."""
    grid = _with_by(pd.DataFrame(grid), fs, data)
    P = fs.part.smooth.predict_matrix(grid)
    fit = P @ fs.gamma
    se = np.sqrt(np.maximum(np.einsum("ia,ab,ib->i", P, fs.cov, P), 0.0))
    z = stats.norm.ppf(0.5 + level / 2)
    out = grid.copy()
    out["fit"], out["se"] = fit, se
    out["lower"], out["upper"] = fit - z * se, fit + z * se
    return out


def plot_smooths(fitted: list[FittedSmooth], data: pd.DataFrame, residual_title: str = ""):
    """A matplotlib figure: one panel per 1-d smooth, its partial effect with a 95 %
    band and a rug of the covariate."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shown = [f for f in fitted if len(f.part.smooth.variables) == 1]
    ncol = min(3, max(1, len(shown)))
    nrow = int(np.ceil(len(shown) / ncol)) if shown else 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.2 * nrow), squeeze=False)
    for ax in axes.ravel()[len(shown):]:
        ax.set_visible(False)
    for ax, f in zip(axes.ravel(), shown, strict=False):
        var = f.part.smooth.variables[0]
        pe = partial_effect(f, default_grid(f, data), data)
        ax.fill_between(pe[var], pe["lower"], pe["upper"], color="tab:blue", alpha=0.25,
                        linewidth=0)
        ax.plot(pe[var], pe["fit"], color="tab:blue")
        x = data[var].to_numpy(dtype=float)
        if f.part.smooth.by_level is not None:
            x = x[(data[f.part.smooth.by] == f.part.smooth.by_level).to_numpy()]
        ax.plot(x, np.full(x.size, 0.0), "|", color="k", alpha=0.4, markersize=8,
                transform=ax.get_xaxis_transform())
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set_xlabel(var)
        ax.set_title(f"{f.label}, edf = {f.edf:.2f}", fontsize=10)
    if residual_title:
        fig.suptitle(residual_title, fontsize=10)
    fig.tight_layout()
    return fig
