"""Complete and quasi-complete separation in the fixed effects.

The maximum likelihood estimates of a model's fixed effects are infinite when the
log-likelihood keeps increasing along a direction ``d != 0`` of the coefficients: a
*direction of recession*. For a binary response (Albert and Anderson 1984) these are
the directions with

    x_i'd >= 0  where y_i = 1,        x_i'd <= 0  where y_i = 0,

for every link whose inverse is a distribution function (logit, probit, cloglog,
cauchit): along such a direction no fitted probability moves away from its response.
The data are *separated* when such a direction exists, *completely* when one makes
every inequality strict, *quasi-completely* otherwise. Every model here reduces to a
cone ``C = {d : A d >= 0, E d = 0}`` of such directions, one row of ``A`` or ``E`` per
constraint:

- binomial (``y`` the proportion of successes, ``weights`` the trials): ``+x_i`` for
  ``y_i = 1``, ``-x_i`` for ``y_i = 0``; an observation with ``0 < y_i < 1`` constrains
  both ways, a row of ``E``;
- ordinal, clmm's ``P(Y <= j) = F(theta_j - eta)`` with thresholds ``theta`` in place of
  the intercept: the directions are ``(b, a)``, ``a`` moving the thresholds. An
  observation of category ``k`` keeps its probability ``F(theta_k - eta) -
  F(theta_{k-1} - eta)`` from falling iff ``a_k - x_i'b >= 0`` (``k < K - 1``) and
  ``x_i'b - a_{k-1} >= 0`` (``k > 0``). This is the cone of the K - 1 binary problems
  ``y <= j`` against ``y > j`` stacked with cut-specific intercepts and one shared ``b``:
  the stacked rows of the other cuts follow from these two given increasing ``a``, and
  increasing ``a`` follows from them once every category is observed (an observation
  of category ``j + 1`` gives ``a_j <= x_i'b <= a_{j+1}``). Categories that do not occur
  are dropped first, as clmm does; only ``b`` is reported;
- multinomial (baseline-category logits, baseline ``b_0 = 0``): an observation of
  category ``k`` gives ``x_i'(b_k - b_l) >= 0`` for every other category ``l``. This is
  the joint cone; fitting each category against the baseline on the rows of those two
  alone is not (the rows of the other categories constrain ``b_k`` too);
- poisson, negative_binomial and nbinom1 with the log link: a zero count gives
  ``-x_i`` (``mu -> 0`` only raises its likelihood), a positive count a row of ``E``
  (``mu`` can go neither to 0 nor to infinity). A factor level whose counts are all 0
  gets the coefficient ``-Inf``. Never *complete*: that word is for categorical
  responses.

Other families and links (gaussian, Gamma, a binomial log or identity link) are not
checked: their estimates do not run off along such a cone (log-binomial models have
their own linear program, Schwendinger, Gruen and Hornik 2021).

Random effects are not part of the check: one group whose responses are all 1 is
absorbed by its random effect, which the variance penalises; only the fixed effects
can run off to infinity.

Method
------
Konis (2007, ch. 4), as R's ``safeBinaryRegression`` and ``detectseparation``: the
linear program

    maximise  sum_i a_i'd   subject to  A d >= 0,  E d = 0,  -1 <= d_j <= 1,

(the sum over the rows of ``A``) has an optimum above 0 iff the data are separated.
Its solution is the one ``detectseparation(purpose = "find")`` reports. The
coefficients with infinite estimates are defined here without depending on which
vertex a solver returns. Let ``S`` be the rows that some direction of ``C`` makes
strict (the separated observations) and ``I`` the others. The directions strict on
every row of ``S`` (sums of the solutions found) are open in ``null(M_I)``, ``M_I``
the rows of ``I`` and ``E``, so ``C`` spans ``null(M_I)``. Coefficient ``j`` is
infinite iff some direction of ``C`` moves it, i.e. iff ``e_j`` is not in the row space
of ``M_I``: the observations that are not separated do not identify it. ``S`` is
found by repeating the program with the objective restricted to the rows not yet
strict, until none becomes strict; each round adds a direction outside the span of
the previous ones, so at most ``p`` rounds.

The direction (+Inf / -Inf) of a coefficient is the sign of its value in the first
solution, as detectseparation reports it, or, where that solution leaves it at 0, in
the first later round that moves it; ``nan`` (either sign) if none does. Where the
data force a sign, every direction of ``C`` has it. Under complete separation the
sign of some coefficients is not determined by the data (``y = x > 0`` is separated
by ``x`` with any intercept between the classes): then it is the solution's, which
leans towards the larger class.

A first pass avoids the linear program on data that are not separated, the usual
case. By Stiemke's alternative the data are not separated iff there are
``lambda > 0`` and ``nu`` with ``A'lambda + E'nu = 0``. Newton's method on the
surrogate ``f(d) = sum_i log(1 + exp(-a_i'd)) + ||E d||^2 / 2`` (the logistic deviance
of the rows of ``A``) gives one: with ``lambda_i = expit(-a_i'd)``, weights ``w_i =
lambda_i (1 - lambda_i)`` and the Newton step ``Delta``,
``lambda_i (1 - (1 - lambda_i) a_i'Delta)`` and ``nu = -E (d + Delta)`` solve the
equation exactly, and they are positive once ``(1 - lambda_i) a_i'Delta < 1``. On
separated data the step keeps adding about 1 to the margin of the separated rows and
no certificate is found; then the linear program decides.

Columns are scaled to a largest absolute value of 1 first: the cone, the separated
rows and the signs do not change, and the tolerances become absolute.

References
----------
Albert, A. and Anderson, J. A. (1984). On the existence of maximum likelihood
estimates in logistic regression models. Biometrika 71, 1-10.
Konis, K. (2007). Linear programming algorithms for detecting separated data in
binary logistic regression models. DPhil thesis, University of Oxford.
Kosmidis, I. and Schumacher, D. detectseparation: Detect and Check for Separation
and Infinite Maximum Likelihood Estimates. R package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg, special
from scipy.optimize import linprog

from glmmbench.errors import FamilyError
from glmmbench.families import ResponseFamily, make_family

__all__ = ["Separation", "detect_separation", "MARGIN_TOL"]

# A row is strict (separated) when its margin a_i'd exceeds this, with columns scaled
# to max |entry| 1 and d in [-1, 1]^p: well above HiGHS's feasibility tolerance 1e-7.
MARGIN_TOL = 1e-6
# A coefficient is moved by the directions of recession when its row of an orthonormal
# basis of them is longer than this.
SUPPORT_TOL = 1e-6
NEWTON_MAXITER = 25
# The certificate of no separation rules out separations whose largest margin (scaled
# columns, d in the box) exceeds this; the linear program looks down to MARGIN_TOL.
CERTIFY_MARGIN = 1e-3



@dataclass(frozen=True)
class Separation:
    """The verdict of :func:`detect_separation`.

    ``coefficients`` are the fixed effects whose maximum likelihood estimates are
    infinite, ``directions`` their signs (``inf``, ``-inf``, or ``nan`` where the data
    allow either), in the order of the design's columns.
    """

    separated: bool = False
    complete: bool = False
    coefficients: tuple[str, ...] = ()
    directions: tuple[float, ...] = ()
    family: str = "binomial"
    counts: bool = False  # a count family's cone: separated where the counts are all 0

    @property
    def message(self) -> str:
        """One line for a fit's messages."""
        if not self.separated:
            return "no separation in the fixed effects"
        kind = "complete" if self.complete else "quasi-complete"
        where = (" (the counts are all 0 where they apply)"
                 if self.counts else "")
        listed = ", ".join(f"{name} ({_sign(s)})"
                           for name, s in zip(self.coefficients, self.directions, strict=True))
        return (f"{kind} separation in the fixed effects{where}: maximum likelihood "
                f"estimates are infinite for {listed}, which the data do not identify; "
                "the values reported for them are where the optimizer stopped, and their "
                "standard errors and Wald tests are meaningless")


def _sign(s: float) -> str:
    return "+/-Inf" if np.isnan(s) else ("+Inf" if s > 0 else "-Inf")


def detect_separation(X: np.ndarray, y: np.ndarray, weights: np.ndarray,
                      names: Sequence[str], family: str | ResponseFamily, *,
                      link: str | None = None, ncat: int | None = None) -> Separation:
    """Which fixed effects have infinite maximum likelihood estimates (module docstring).

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Fixed-effects model matrix of full column rank (a Design's ``X``).
    y : ndarray, shape (n,)
        binomial: proportion of successes; ordinal: 0-based category codes; counts:
        the counts; multinomial: the expanded design's 0/1 indicators
        (``multinomial.expand_design``, K - 1 rows per observation).
    weights : ndarray, shape (n,)
        Prior weights (binomial: the trials); rows of weight 0 are ignored.
    names : the column names of X.
    family : the family, or its name (with ``link``).
    link : the link's name with a family's name; None for the family's default.
    ncat : the number of response categories; required for multinomial.

    Returns
    -------
    Separation
        Not separated for the families and links that are not checked.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"X has shape {X.shape} but {len(names)} names were given")
    kind = _cone_kind(family, link)
    family = family if isinstance(family, str) else family.name
    if X.shape[1] == 0 or kind is None:
        return Separation(family=family)
    cone = _CONES[kind](X, np.asarray(y, dtype=float), np.asarray(weights, dtype=float), ncat)
    A, E = _scaled(*cone)
    if A.shape[0] == 0 or _not_separated(A, E):
        return Separation(family=family)
    strict, sign = _separated_rows(A, E)
    if not strict.any():
        return Separation(family=family)
    moved = _moved(np.vstack([A[~strict], E]), np.vstack([A, E]))[:X.shape[1]]
    idx = np.flatnonzero(moved)
    if idx.size == 0:
        return Separation(family=family)
    directions = tuple(float(sign[j] * np.inf) for j in idx)
    counts = kind == "counts"
    complete = bool(strict.all()) and E.shape[0] == 0 and not counts
    return Separation(True, complete, tuple(names[j] for j in idx), directions, family, counts)


# ----------------------------------------------------------------------------
# The cone of each family
# ----------------------------------------------------------------------------

def _cone_kind(family: str | ResponseFamily, link: str | None) -> str | None:
    """The family's cone (``ResponseFamily.separation_cone``), None where the family
    and link are not checked (or do not exist)."""
    if not isinstance(family, ResponseFamily):
        try:
            family = make_family(family, link)
        except FamilyError:
            return None
    return family.separation_cone


def checked(family: str | ResponseFamily, link: str | None = None) -> bool:
    """Whether `detect_separation` checks models of this family and link."""
    return _cone_kind(family, link) is not None


def _cone(X, y, weights, family, link, ncat) -> tuple[np.ndarray, np.ndarray] | None:
    """``(A, E)``: the rows of ``A d >= 0`` and ``E d = 0``; None if not checked."""
    kind = _cone_kind(family, link)
    return None if kind is None else _CONES[kind](X, y, weights, ncat)


def _counts_cone(X, y, weights, ncat):
    keep = weights > 0
    X, y = X[keep], y[keep]
    return -X[y == 0], X[y > 0]


def _multinomial_rows(X, y, weights, ncat):
    if ncat is None:
        raise ValueError("multinomial separation needs ncat, the number of categories")
    return _multinomial_cone(X, y, weights, ncat)


# the cones by ``ResponseFamily.separation_cone``: ``(X, y, weights, ncat) -> (A, E)``,
# the rows of ``A d >= 0`` and ``E d = 0``
_CONES = {
    "binary": lambda X, y, w, ncat: _binary_cone(X[w > 0], y[w > 0]),
    "counts": _counts_cone,
    "ordinal": lambda X, y, w, ncat: _ordinal_cone(X[w > 0], y[w > 0]),
    "multinomial": _multinomial_rows,
}


def _binary_cone(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inner = (y > 0) & (y < 1)
    return np.vstack([X[y >= 1], -X[y <= 0]]), X[inner]


def _ordinal_cone(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directions ``(b, a)``, ``a`` of the thresholds of the observed categories."""
    _, k = np.unique(y, return_inverse=True)
    K = int(k.max()) + 1 if k.size else 0
    if K < 2:
        return np.zeros((0, X.shape[1])), np.zeros((0, X.shape[1]))
    cuts = np.eye(K - 1)
    below = k < K - 1  # a_k - x'b >= 0
    above = k > 0  # x'b - a_{k-1} >= 0
    A = np.vstack([np.hstack([-X[below], cuts[k[below]]]),
                   np.hstack([X[above], -cuts[k[above] - 1]])])
    return A, np.zeros((0, A.shape[1]))


def _multinomial_cone(X: np.ndarray, y: np.ndarray, weights: np.ndarray, ncat: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """From the expanded design: rows ``x_i'(b_k - b_l)`` with ``b_0 = 0``."""
    K1 = ncat - 1
    n, P = X.shape[0] // K1, X.shape[1]
    Y = y.reshape(n, K1)
    keep = weights.reshape(n, K1)[:, 0] > 0
    codes = np.where(Y.max(axis=1) > 0.5, Y.argmax(axis=1) + 1, 0)[keep]
    G = np.concatenate([np.zeros((n, 1, P)), X.reshape(n, K1, P)], axis=1)[keep]
    own = G[np.arange(G.shape[0]), codes]
    other = np.arange(ncat)[None, :] != codes[:, None]
    return (own[:, None, :] - G)[other], np.zeros((0, P))


def _scaled(A: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.zeros(A.shape[1])
    for M in (A, E):
        if M.shape[0]:
            scale = np.maximum(scale, np.abs(M).max(axis=0))
    scale[scale == 0] = 1.0
    return A / scale, E / scale


# ----------------------------------------------------------------------------
# The certificate of no separation, the linear programs, the unidentified columns
# ----------------------------------------------------------------------------

def _not_separated(A: np.ndarray, E: np.ndarray) -> bool:
    """True when Newton's method on the surrogate finds ``lambda > 0`` with
    ``A'lambda + E'nu = 0`` (module docstring); False leaves it to the linear program."""
    d = np.zeros(A.shape[1])
    EtE = E.T @ E

    def surrogate(m, d):
        return np.sum(np.logaddexp(0.0, -m)) + 0.5 * d @ EtE @ d

    m = A @ d
    for _ in range(NEWTON_MAXITER):
        lam = special.expit(-m)
        g = EtE @ d - A.T @ lam
        try:
            step = linalg.cho_solve(linalg.cho_factor((A.T * (lam * (1.0 - lam))) @ A + EtE),
                                    -g)
        except linalg.LinAlgError:
            return False
        dm = A @ step
        if _certified(A, EtE, lam * (1.0 - (1.0 - lam) * dm), d + step):
            return True
        if np.abs(dm).max() < 1e-8:  # converged, with rows too deep to certify
            return False
        f, t = surrogate(m, d), 1.0
        while t > 1e-10 and surrogate(m + t * dm, d + t * step) > f:
            t /= 2  # the surrogate is convex and the step a descent direction
        d, m = d + t * step, m + t * dm
    return False


def _certified(A: np.ndarray, EtE: np.ndarray, lam: np.ndarray, d: np.ndarray) -> bool:
    """Whether ``lam > 0`` and ``nu = -E d`` solve ``A'lam + E'nu = 0`` closely enough.

    A direction ``d_s`` in the box with ``A d_s >= 0``, ``E d_s = 0`` would give
    ``d_s'r = sum_i lam_i a_i'd_s >= min(lam) max_i a_i'd_s`` for the residual ``r``,
    and ``|d_s'r| <= p max|r|``: a residual below ``CERTIFY_MARGIN min(lam) / p`` rules
    out every separation whose largest margin exceeds ``CERTIFY_MARGIN`` (up to the
    rounding of ``r`` itself). Data with rows of tiny ``lam`` (margins beyond about 16
    with 1e5 rows, where ``r`` is about 1e-11) leave the decision to the linear program.
    """
    r = A.T @ lam - EtE @ d
    return A.shape[1] * np.abs(r).max() < CERTIFY_MARGIN * lam.min()


def _lp(A: np.ndarray, E: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``argmax c'd`` over ``A d >= 0, E d = 0, -1 <= d <= 1`` (HiGHS)."""
    res = linprog(-c, A_ub=-A, b_ub=np.zeros(A.shape[0]),
                  A_eq=E if E.shape[0] else None, b_eq=np.zeros(E.shape[0]) if E.shape[0]
                  else None, bounds=(-1.0, 1.0), method="highs")
    if res.status != 0:  # d = 0 is feasible and the box bounds the program
        raise RuntimeError(f"separation linear program failed: {res.message}")
    return res.x


def _separated_rows(A: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows some direction of recession makes strict, and per coordinate the sign
    it has in the first solution that moves it (nan if none does).

    Round 0 is detectseparation's program. Later rounds keep as constraints only the
    rows not yet strict: for a direction ``d`` of that larger cone, ``t d_0 + d`` is one
    of the whole cone for ``d_0`` strict on the others and ``t`` large enough, so a
    coordinate the earlier solutions left at 0 takes the sign of ``d``.
    """
    strict = np.zeros(A.shape[0], dtype=bool)
    sign = np.full(A.shape[1], np.nan)
    for _ in range(A.shape[1] + 1):
        rest = np.flatnonzero(~strict)
        d = _lp(A[rest], E, A[rest].sum(axis=0))
        moves = np.isnan(sign) & (np.abs(d) > MARGIN_TOL)
        sign[moves] = np.sign(d[moves])
        new = rest[A[rest] @ d > MARGIN_TOL]
        if new.size == 0:
            break
        strict[new] = True
        if strict.all():
            break
    return strict, sign


def _null_basis(M: np.ndarray) -> np.ndarray:
    """Orthonormal basis (columns) of ``{d : M d = 0}``."""
    if M.shape[0] == 0:
        return np.eye(M.shape[1])
    _, s, Vt = np.linalg.svd(M, full_matrices=M.shape[0] < M.shape[1])
    rank = int(np.sum(s > s[0] * max(M.shape) * np.finfo(float).eps))
    return Vt[rank:].T


def _moved(M_inner: np.ndarray, M_all: np.ndarray) -> np.ndarray:
    """Coordinates moved by ``null(M_inner)`` beyond ``null(M_all)`` (the directions the
    whole design leaves undetermined are not separation)."""
    N = _null_basis(M_inner)
    N0 = _null_basis(M_all)
    if N0.shape[1] and N.shape[1]:
        U, s, _ = np.linalg.svd(N - N0 @ (N0.T @ N), full_matrices=False)
        N = U[:, s > SUPPORT_TOL]
    return np.linalg.norm(N, axis=1) > SUPPORT_TOL
