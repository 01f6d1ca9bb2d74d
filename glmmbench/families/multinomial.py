"""The multinomial response: baseline-category logit mixed models.

For K categories with the first as baseline, observation i has K - 1 linear
predictors

    eta_ik = offset_i + x_i' beta_k + z_i' b_k,
    P(Y_i = k | b) = exp(eta_ik) / (1 + sum_l exp(eta_il)),

and a group's category effects ``(b_1, ..., b_{K-1})`` share one block of Lambda
(``(1 | g)``: an unstructured (K-1) x (K-1) covariance; ``(1 || g)``: independent
category effects). The model is written on an expanded design with K - 1 rows per
observation (observation-major): row (i, k) carries ``x_i`` in the fixed-effect
block of category k (coefficients named ``category~term``, mclogit's convention) and
``z_i`` in the random-effect block of category k.

PIRLS: the negative Hessian of ``log P(Y_i = y_i)`` in ``eta_i`` is the
(K - 1) x (K - 1) block ``W_i = w_i (diag(p_i) - p_i p_i')`` (the canonical link:
Fisher and observed information agree). With ``W_i = R_i' R_i`` the weighted normal
equations over the expanded rows are ordinary (weight 1) ones over the whitened
rows ``R_i [X_i, Z_i Lambda, z_i]`` (``whitened``), so the blocked Cholesky factor,
the Laplace approximation and AGQ are those of every other response.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from glmmbench.engine.linalg import batched_cholesky
from glmmbench.errors import GLMMError
from glmmbench.families.base import (
    CodedResponse,
    ResponseFamily,
    ResponseVariable,
    categorical_support,
    code_categorical,
)
from glmmbench.families.response import CategoricalResponse, WorkingValues

if TYPE_CHECKING:
    from glmmbench.model.design import Design

__all__ = ["MultinomialFamily", "MultinomialResponse", "expand_design", "MAX_RE_DIM"]

# Correlated random effects per group and term, (K - 1) q. Each adds an unstructured
# covariance of D (D + 1) / 2 parameters to the derivative-free optimizer (12 -> 78),
# beyond which fits take minutes and the covariance is rarely identified.
MAX_RE_DIM = 12


@dataclass(frozen=True)
class _LogitName:
    name: str = "logit"


@dataclass(frozen=True)
class MultinomialFamily(ResponseFamily):
    """The ``family`` of a multinomial fit (baseline-category logits; the plug-in
    interface: ``families.base``)."""

    name: str = "multinomial"
    link: Any = field(default_factory=_LogitName)
    dispersion: None = None

    multivariate = True
    smooths = False  # mgcv's multinom is not a mixed model: no reference for smooths
    predict_types = ("prob", "class", "link")
    separation_cone = "multinomial"
    r_engines = ("mgcv",)  # gam's multinom: independent category effects

    def code_response(self, var: ResponseVariable, weights: np.ndarray) -> CodedResponse:
        """A factor's, text's or integer codes' 0-based codes (the first level is the
        baseline)."""
        return code_categorical(var, weights, self.name, ordered=False)

    def prepare_design(self, design: Design) -> Design:
        """The design on K - 1 rows per observation (`expand_design`)."""
        return expand_design(design)

    def make_response(self, design: Design) -> MultinomialResponse:
        """On the expanded design (`expand_design`): its one-hot rows back to codes."""
        K1 = len(design.response_levels) - 1
        Y = design.y.reshape(-1, K1)
        codes = np.where(Y.any(axis=1), Y.argmax(axis=1) + 1, 0)
        return MultinomialResponse(codes, design.weights[::K1], design.offset,
                                   design.response_levels, self)

    def nobs(self, design: Design) -> int:
        return design.n // (len(design.response_levels) - 1)

    def newresp(self, y: np.ndarray, levels: tuple[str, ...] | None) -> np.ndarray:
        """0-based codes as the expanded design's one-hot rows."""
        return (y[:, None] == np.arange(1, len(levels))[None, :]).astype(float).reshape(-1)

    def simulate(self, rng, eta, weights, dispersion, levels, thresholds, *, replicate=1):
        """A category drawn from the softmax probabilities of each observation."""
        P = softmax_probs(eta.reshape(-1, len(levels) - 1))
        codes = (rng.uniform(size=(P.shape[0], 1)) > np.cumsum(P, axis=1)).sum(axis=1)
        return pd.Categorical.from_codes(np.minimum(codes, len(levels) - 1),
                                         categories=list(levels))

    def outside_support(self, y, levels=None):
        return categorical_support(y, levels)


def _blocks(A: np.ndarray, K1: int) -> np.ndarray:
    """``(n, c)`` -> ``(n * K1, c * K1)``: row (i, k) holds ``A_i`` in column block k."""
    n, c = A.shape
    out = np.zeros((n, K1, K1, c))
    for k in range(K1):
        out[:, k, k, :] = A
    return out.reshape(n * K1, K1 * c)


def expand_design(design: Design) -> Design:
    """The design on K - 1 rows per observation (module docstring)."""
    levels = design.response_levels
    K1 = len(levels) - 1
    rep = np.repeat
    X = _blocks(design.X, K1)
    names = tuple(f"{c}~{t}" for c in levels[1:] for t in design.fixef_names)
    doubles = [rs.double_bar for rs in design.spec.random] if design.spec else []
    terms = []
    for j, t in enumerate(design.terms):
        double = j < len(doubles) and doubles[j]
        if not double and K1 * t.q > MAX_RE_DIM:
            D = K1 * t.q
            raise GLMMError(
                f"multinomial response with {K1 + 1} categories and random-effects term "
                f"({t.term or t.group}) with {t.q} columns gives {D} correlated effects per "
                f"group ({D * (D + 1) // 2} covariance parameters), more than the "
                f"{MAX_RE_DIM} supported: use independent category effects "
                f"(... || {t.group}) or merge categories")
        codes = rep(t.codes, K1)
        Xr = _blocks(t.Xr, K1)
        cnames = tuple(f"{c}~{n}" for c in levels[1:] for n in t.cnames)
        if double:  # (x || g): one term per category and column
            for a, cn in enumerate(cnames):
                terms.append(replace(t, cnames=(cn,), codes=codes,
                                     Xr=np.ascontiguousarray(Xr[:, a:a + 1])))
        else:
            terms.append(replace(t, cnames=cnames, codes=codes, Xr=Xr))
    onehot = (design.y[:, None] == np.arange(1, K1 + 1)[None, :]).astype(float).reshape(-1)
    return replace(design, y=onehot, X=X, fixef_names=names, weights=rep(design.weights, K1),
                   offset=rep(design.offset, K1), terms=tuple(terms),
                   trials=None)


def _with_baseline(eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n, K[, M])`` predictors with the baseline's 0 first, shifted by their maximum,
    and ``log sum exp`` of the shifted ones."""
    # the category axis is short: reductions over it column by column are much
    # faster than numpy's reductions along a small inner axis
    m = np.zeros_like(eta[:, 0])
    for k in range(eta.shape[1]):
        m = np.maximum(m, eta[:, k])
    full = np.concatenate([np.zeros_like(eta[:, :1]), eta], axis=1) - m[:, None]
    ex = np.exp(full)
    total = ex[:, 0].copy()
    for k in range(1, full.shape[1]):
        total += ex[:, k]
    return full, np.log(total)


def softmax_probs(eta: np.ndarray) -> np.ndarray:
    """``(n, K - 1[, M])`` baseline-logit predictors -> ``(n, K[, M])`` probabilities."""
    full, lse = _with_baseline(eta)
    return np.exp(full - lse[:, None])


@dataclass(frozen=True)
class MultinomialWorkingValues(WorkingValues):
    """WorkingValues plus the Cholesky factors ``R_i`` of the weight blocks and
    ``-2 w log p_y`` per observation."""

    R: np.ndarray
    dev: np.ndarray


@dataclass(frozen=True)
class MultinomialResponse(CategoricalResponse):
    """A categorical response on the expanded design; ``codes`` are 0-based (0 = baseline)."""

    codes: np.ndarray
    weights: np.ndarray  # per observation
    offset: np.ndarray  # per expanded row
    levels: tuple[str, ...]
    family: MultinomialFamily = field(default_factory=MultinomialFamily)
    observed: bool = False  # the PIRLS factor is already the exact Hessian's

    def __post_init__(self):
        K1 = len(self.levels) - 1
        Y = (self.codes[:, None] == np.arange(1, K1 + 1)[None, :]).astype(float)
        object.__setattr__(self, "_Y", Y)

    @property
    def K1(self) -> int:
        return len(self.levels) - 1

    @property
    def nobs(self) -> int:
        return self.codes.shape[0]

    # ---- no outer parameters
    nparams = 0

    def param_start(self) -> np.ndarray:
        return np.empty(0)

    def param_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.empty(0), np.empty(0)

    def with_params(self, params: np.ndarray) -> MultinomialResponse:
        return self

    # ---- the likelihood
    def _logp_y(self, eta: np.ndarray) -> np.ndarray:
        """``log P(Y_i = y_i)`` per observation; ``eta`` ``(N,)`` or ``(N, M)``."""
        full, lse = _with_baseline(eta.reshape(self.nobs, self.K1, *eta.shape[1:]))
        pick = np.take_along_axis(full, self.codes.reshape(-1, 1, *([1] * (eta.ndim - 1))),
                                  axis=1)[:, 0]
        return pick - lse

    def loglik_obs(self, eta: np.ndarray) -> np.ndarray:
        """``w log P(Y_i = y_i)`` placed on the first expanded row of each observation
        (0 on the others), so that any sum over rows, or over a group's rows, is the
        log-likelihood."""
        lp = self._logp_y(eta)
        w = self.weights if eta.ndim == 1 else self.weights[:, None]
        out = np.zeros((self.nobs, self.K1, *eta.shape[1:]))
        out[:, 0] = w * lp
        return out.reshape(eta.shape)

    def working(self, eta: np.ndarray) -> MultinomialWorkingValues:
        """The blocks ``W_i = w_i (diag(p) - p p')`` over the non-baseline categories,
        their Cholesky factors, and the working residual
        ``W_i^{-1} w_i (y_i - p) = (y_i - p) / p + (1'(y_i - p)) / p_0`` (Sherman-Morrison,
        with ``p_0`` the baseline's probability)."""
        n, K1 = self.nobs, self.K1
        full, lse = _with_baseline(eta.reshape(n, K1))
        logp = full - lse[:, None]
        Pall = np.exp(logp)
        # a floor keeps W_i positive definite where a probability underflows
        P, p0 = np.maximum(Pall[:, 1:], 1e-300), np.maximum(Pall[:, 0], 1e-300)
        R = self._Y - P
        wres = R / P + (R.sum(axis=1) / p0)[:, None]
        W = -P[:, :, None] * P[:, None, :]
        idx = np.arange(K1)
        W[:, idx, idx] += P
        W *= self.weights[:, None, None]
        L, _ = batched_cholesky(W + 1e-13 * np.eye(K1)[None])
        dev = -2.0 * self.weights * np.take_along_axis(logp, self.codes[:, None], axis=1)[:, 0]
        return MultinomialWorkingValues(eta, eta, np.ones(n * K1), wres.reshape(-1),
                                        np.swapaxes(L, 1, 2), dev)

    def whitened(self, wv: MultinomialWorkingValues, V: list[np.ndarray],
                 X: np.ndarray | None, z: np.ndarray | None):
        """``(V, w, X, z)`` for ``crossproducts``: every observation's rows times ``R_i``."""
        n, K1, R = self.nobs, self.K1, wv.R

        def tr(A: np.ndarray) -> np.ndarray:
            B = A.reshape(n, K1, -1)
            if K1 == 2:  # R upper triangular: two rows by hand
                out = np.empty_like(B)
                out[:, 0] = R[:, 0, 0, None] * B[:, 0] + R[:, 0, 1, None] * B[:, 1]
                out[:, 1] = R[:, 1, 1, None] * B[:, 1]
                return out.reshape(A.shape)
            return np.matmul(R, B).reshape(A.shape)

        return ([tr(v) for v in V], wv.w, None if X is None else tr(X),
                None if z is None else tr(z))

    def curvature_weights(self, wv: WorkingValues) -> np.ndarray:
        return wv.w

    # L's weights are the (K - 1) x (K - 1) blocks W_i (the gradient reads
    # curvature_blocks; wv.w are ones on the whitened rows), for K = 2 too
    weight_blocks = True

    def curvature_blocks(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Laplace gradient's quantities on the expanded rows at ``eta``: the score
        ``s_ik = w_i (y_ik - p_ik)`` (``(n K1,)``), the blocks ``W_i = w_i (diag(p) -
        p p')`` (``(n, K1, K1)``) and their derivatives ``dW_i / deta_ik`` (``(n, K1,
        K1, K1)``, k first): with ``dp = dp / deta_k = p (e_k - p_k)``,
        ``dW / deta_k = w (diag(dp) - dp p' - p dp')``."""
        n, K1 = self.nobs, self.K1
        full, lse = _with_baseline(eta.reshape(n, K1))
        P = np.exp(full - lse[:, None])[:, 1:]
        wt = self.weights[:, None]
        s = (wt * (self._Y - P)).reshape(-1)
        W = -P[:, :, None] * P[:, None, :]
        idx = np.arange(K1)
        W[:, idx, idx] += P
        W *= self.weights[:, None, None]
        dP = P[:, None, :] * (np.eye(K1)[None] - P[:, :, None])  # [i, k, j] = dp_j/deta_k
        dW = -(dP[:, :, :, None] * P[:, None, None, :] + P[:, None, :, None] * dP[:, :, None, :])
        dW[:, :, idx, idx] += dP
        dW *= self.weights[:, None, None, None]
        return s, W, dW

    def deviance_at(self, wv: MultinomialWorkingValues) -> float:
        return float(np.sum(wv.dev))

    def dev_resids(self, mu: np.ndarray) -> np.ndarray:
        return -2.0 * self.loglik_obs(mu)

    def deviance(self, mu: np.ndarray) -> float:
        return float(np.sum(self.dev_resids(mu)))

    def minus2loglik(self, mu: np.ndarray) -> float:
        return self.deviance(mu)
