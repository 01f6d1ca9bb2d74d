"""Population-averaged ("marginal") coefficients of a GLMM.

A GLMM's fixed effects are conditional on the random effects: ``beta`` moves the
mean of a subject whose ``b`` is held fixed. The population-averaged mean of
observation ``i`` averages the conditional one over ``b ~ N(0, D(theta))``, every
random term together (crossed or nested; the terms are independent):

    mu_i^M(theta, beta) = E_b[ g^{-1}(x_i' beta + o_i + z_i' b) ]
                        = int g^{-1}(eta_i + sqrt(v_i) t) phi(t) dt,

with ``eta_i = x_i' beta + o_i`` (``o`` the offset) and ``v_i = z_i' D z_i`` the
variance of the scalar normal ``z_i' b``. With a nonlinear link ``g(mu^M)`` is no
longer linear in ``x``; the marginal coefficients are its least-squares projection
on the columns of ``X`` (Hedeker, du Toit, Demirtas & Gibbons 2018, "A note on
marginalization of regression parameters from mixed models of binary outcomes",
Biometrics 74(1); GLMMadaptive's ``marginal_coefs()``):

    beta^M = argmin_beta  sum_i w_i (g(mu_i^M) - o_i - x_i' beta)^2.

The integral: ``exp(eta + v / 2)`` for the log link, ``Phi(eta / sqrt(1 + v))`` for
probit, ``eta`` for identity, ``eta^2 + v`` for sqrt (all exact); Gauss-Hermite
quadrature for logit, cloglog and cauchit (``marginal_nodes``).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.linalg as sla
from scipy import special

from glmmbench.engine.quadrature import gh_rule
from glmmbench.errors import GLMMError
from glmmbench.families.glm import FAMILIES, Link
from glmmbench.model.design import Design
from glmmbench.model.theta import lambdas

if TYPE_CHECKING:
    from glmmbench.results import GLMMResult

__all__ = ["marginal_coefs", "marginal_mean", "marginal_nodes", "re_variance",
           "MARGINAL_FAMILIES"]

# the families whose registry entry says so (FamilyDef.marginal), for messages
MARGINAL_FAMILIES = tuple(name for name, d in FAMILIES.items() if d.marginal)
# Gauss-Hermite nodes per unit variance v = s^2 of z_i' b: the error of a k-node rule
# for E[F(eta + s t)] falls as exp(-c sqrt(k) / s), c set by F's poles (logit,
# cauchit) or growth (cloglog) off the real axis. These (40 to 300 nodes) keep it
# below 1e-9 against scipy's quad for logit up to s = 5, cloglog up to s = 2.3 and
# cauchit up to s = 2 (1e-11 for s <= 4, 2.3, 1.7). numpy's hermegauss loses its
# weights to underflow beyond about 380 nodes, hence the cap.
NODES_PER_VARIANCE = {"logit": 20, "cloglog": 60, "cauchit": 100}
MIN_NODES, MAX_NODES = 40, 300
JACOBIAN_STEP = 1e-5  # relative step of the central differences of beta^M
_CHUNK_CELLS = 1 << 22  # observation x node values held at once


def re_variance(design: Design, theta: np.ndarray, scale2: float = 1.0) -> np.ndarray:
    """``v_i = z_i' D z_i``: the variance of each observation's random part, summed
    over the random terms (independent), ``D_k = scale2 Lambda_k Lambda_k'``
    (``scale2 = sigma^2`` for an LMM, 1 for a GLMM). Smooths' penalized parts are
    fixed functions of the fit, not averaged over."""
    v = np.zeros(design.n)
    for t, L in zip(design.terms, lambdas(theta, design.cov_blocks), strict=True):
        if t.smooth is not None:
            continue
        v += np.einsum("ia,ab,ib->i", t.Xr, scale2 * (L @ L.T), t.Xr)
    return v


def marginal_nodes(link: str, v_max: float) -> int:
    """Gauss-Hermite nodes for ``link`` and random parts of variance up to ``v_max``
    (``NODES_PER_VARIANCE``; its largest rate for other links)."""
    rate = NODES_PER_VARIANCE.get(link, max(NODES_PER_VARIANCE.values()))
    return int(np.clip(np.ceil(rate * v_max), MIN_NODES, MAX_NODES))


def marginal_mean(link: Link, eta: np.ndarray, v: np.ndarray,
                  nodes: int | None = None) -> np.ndarray:
    """``E[g^{-1}(eta_i + sqrt(v_i) t)]``, ``t ~ N(0, 1)``, for each observation.

    Exact for the log, probit, identity and sqrt links; otherwise a ``nodes``-point
    Gauss-Hermite rule (default ``marginal_nodes(link.name, max v)``; pass it to hold
    the rule fixed while ``v`` moves, as numerical derivatives need).
    """
    eta, v = np.asarray(eta, dtype=float), np.asarray(v, dtype=float)
    if link.name == "log":
        return np.exp(eta + v / 2)
    if link.name == "probit":
        return special.ndtr(eta / np.sqrt(1.0 + v))
    if link.name == "identity":
        return eta.copy()
    if link.name == "sqrt":
        return eta**2 + v
    if nodes is None:
        nodes = marginal_nodes(link.name, float(np.max(v, initial=0.0)))
    rule = gh_rule(nodes)
    z, w = rule.z[:, 0], np.exp(rule.logw)
    sd = np.sqrt(v)
    mu = np.empty(eta.size)
    step = max(1, _CHUNK_CELLS // z.size)
    for s in range(0, eta.size, step):
        rows = slice(s, s + step)
        mu[rows] = link.linkinv(eta[rows, None] + sd[rows, None] * z[None, :]) @ w
    return mu


def marginal_coefs(res: GLMMResult, std_errors: bool = True) -> pd.DataFrame:
    """Population-averaged ("marginal") coefficients, as GLMMadaptive's
    ``marginal_coefs(std_errors = TRUE)`` defines them (Hedeker et al. 2018).

    The marginal mean of each observation averages the conditional mean over the
    fitted random-effect distribution, ``b ~ N(0, D(theta))`` (all random terms):

        mu_i^M = E_b[ g^{-1}(x_i' beta + o_i + z_i' b) ]
               = int g^{-1}(eta_i + sqrt(v_i) t) phi(t) dt,   v_i = z_i' D z_i,

    in closed form for the log link (``exp(eta_i + v_i / 2)``), probit
    (``Phi(eta_i / sqrt(1 + v_i))``), identity and sqrt, by Gauss-Hermite quadrature
    for logit, cloglog and cauchit (``marginal_mean``). The marginal coefficients
    project it through the link:

        beta^M = argmin_beta  sum_i w_i (g(mu_i^M) - o_i - x_i' beta)^2
               = (X' W X)^{-1} X' W (g(mu^M) - o).

    The offset ``o`` enters ``mu^M`` and is taken out again before the projection,
    so that it is not absorbed into the coefficients (GLMMadaptive projects
    ``g(mu^M)`` with the offset left in). ``w`` are the prior weights, binomial
    trials included: a ``cbind(s, f)`` row counts as its ``s + f`` binary rows, so
    aggregated and binary data give the same ``beta^M``; with unit weights (binary
    responses, unweighted counts) this is GLMMadaptive's unweighted least squares.

    Standard errors by the delta method over the parameters ``(theta, beta)`` (the
    dispersion of the negative binomials does not enter the mean):

        Cov(beta^M) ~= J C J',   J = d beta^M / d(theta, beta),

    ``J`` by central differences (relative step ``JACOBIAN_STEP``, the quadrature
    rule held fixed), ``C`` the ``(theta, beta)`` block of ``2 H^{-1}``, the inverse
    of the finite-difference Hessian of the Laplace (or AGQ) deviance over
    ``(theta, log dispersion, beta)`` stored in ``res.optinfo["derivs"]`` (the
    block of the full inverse: the dispersion's uncertainty is integrated out, not
    fixed). GLMMadaptive draws the parameters from their sampling distribution
    instead (``K = 100`` draws). Where no Hessian was stored (``nagq = 0`` fits,
    ``control={"calc_derivs": False}``) or it is not positive definite, the
    standard errors are NaN, with a warning that says why.

    Parameters
    ----------
    res : a fitted binomial, Poisson, negative_binomial (nbinom2) or nbinom1 model
        (``glmmbench.fit``), any link. A Gaussian identity-link model is allowed:
        its marginal coefficients are its fixed effects and their standard errors.
    std_errors : add the ``Std. Error`` column.

    Returns
    -------
    DataFrame indexed by R's fixed-effect names (``res.fixef.index``), columns
    ``Estimate`` and ``Std. Error`` (GLMMadaptive prints ``Estimate, Std.Err``; the
    name here is lme4's, as ``coef_table``).

    Raises
    ------
    GLMMError for other families (ordinal, multinomial, Gamma, Gaussian with a
    non-identity link), naming it, and for models with smooth terms.
    """
    _check_model(res)
    if res.is_lmm:  # identity link: mu^M = eta, so beta^M = beta and J = [0, I]
        out = pd.DataFrame({"Estimate": res.fixef.to_numpy()}, index=res.fixef.index)
        if std_errors:
            out["Std. Error"] = res.se.to_numpy()
        return out
    d, link = res.design, res.family.link
    nt = res.theta.size
    P = _projection(d.X, d.weights)
    nodes = marginal_nodes(link.name, float(np.max(re_variance(d, res.theta), initial=0.0)))

    def beta_marginal(params: np.ndarray) -> np.ndarray:
        theta, beta = params[:nt], params[nt:]
        mu = marginal_mean(link, d.X @ beta + d.offset, re_variance(d, theta), nodes)
        return P @ (link.linkfun(mu) - d.offset)

    params = np.concatenate([res.theta, res.fixef.to_numpy()])
    out = pd.DataFrame({"Estimate": beta_marginal(params)}, index=res.fixef.index)
    if std_errors:
        C, why = _theta_beta_cov(res)
        if C is None:
            warnings.warn(f"marginal_coefs: no standard errors: {why}", UserWarning,
                          stacklevel=2)
            out["Std. Error"] = np.nan
        else:
            J = _jacobian(beta_marginal, params)
            out["Std. Error"] = np.sqrt(np.einsum("ij,jk,ik->i", J, C, J))
    return out


def _check_model(res: GLMMResult) -> None:
    """The families whose mean is ``g^{-1}(eta)`` and whose integral exists for
    every link they allow; no smooths (their random parts are not averaged over)."""
    fam = res.family
    if not res.is_lmm and not fam.marginal:
        raise GLMMError(
            f"marginal_coefs is not available for the {fam.name} family (link "
            f"{fam.link.name}); it supports {', '.join(MARGINAL_FAMILIES)} models, and "
            f"gaussian identity-link ones (whose marginal coefficients are the fixed effects)")
    if res.design.smooths:
        labels = ", ".join(f.label for f in res.fitted_smooths) or "smooth terms"
        raise GLMMError(f"marginal_coefs does not handle models with smooth terms ({labels}): "
                        f"their penalized parts are random terms of the fit that the "
                        f"population average would have to leave out")


def _projection(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The ``p x n`` map ``y -> (X' W X)^{-1} X' W y``, by QR of ``W^{1/2} X``."""
    sw = np.sqrt(weights)
    Q, R = np.linalg.qr(X * sw[:, None])
    return sla.solve_triangular(R, Q.T * sw[None, :])


def _theta_beta_cov(res: GLMMResult) -> tuple[np.ndarray | None, str]:
    """The ``(theta, beta)`` block of ``2 H^{-1}``, or None and the reason.

    ``H`` is over ``(theta, log dispersion, beta)`` (``make_result``: the
    dispersion sits at index ``ntheta`` where the family has one, as
    ``_dispersion_info`` reads it)."""
    derivs = res.optinfo.get("derivs")
    if derivs is None:
        return None, ("no Hessian of the deviance was stored (nagq = 0 fits, or "
                      "control calc_derivs=False)")
    H = np.asarray(derivs["Hessian"], dtype=float)
    nt, p = res.theta.size, res.fixef.size
    nd = int("dispersion" in res.optinfo)
    if H.shape != (nt + nd + p, nt + nd + p):
        return None, (f"the stored Hessian is {H.shape[0]} x {H.shape[1]}, not over "
                      f"(theta, dispersion, beta) = {nt + nd + p} parameters")
    if not np.all(np.isfinite(H)) or np.linalg.eigvalsh(H).min() <= 0:
        return None, "the finite-difference Hessian of the deviance is not positive definite"
    keep = np.r_[0:nt, nt + nd:nt + nd + p]
    C = 2.0 * np.linalg.inv(H)[np.ix_(keep, keep)]
    return 0.5 * (C + C.T), ""


def _jacobian(f, x: np.ndarray) -> np.ndarray:
    """``d f / d x`` by central differences, step ``JACOBIAN_STEP * max(1, |x_k|)``."""
    cols = []
    for k in range(x.size):
        h = JACOBIAN_STEP * max(1.0, abs(x[k]))
        e = np.zeros(x.size)
        e[k] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return np.stack(cols, axis=1)
