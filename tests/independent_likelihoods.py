"""Marginal likelihoods written independently of the engine, for the value tests of
profile intervals (tests/test_profile_families.py) and of multinomial random slopes
(tests/test_inference_values.py).

Nothing here imports glmmbench: the densities are written from the model's
definition with ``scipy.special``, the integrals with rules built here.

- `OrdinalLikelihood`: a cumulative-logit model with one scalar random intercept
  (clmm's convention ``P(Y <= j | b) = expit(theta_j - x'beta - b)``); each group's
  integral over ``v = b / sd ~ N(0, 1)`` by the trapezoid rule on a fixed grid
  (step 0.1 on [-8, 8]: for these smooth, light-tailed integrands the error falls
  like ``exp(-2 pi^2 s^2 / h^2)`` for a posterior sd s; on the wine data step 0.05
  on [-9, 9] gives the same deviance to the last digit), with its exact gradient
  (the grid is fixed, so the derivative of the sum is the grid's posterior mean of
  the complete-data score).
- `MultinomialLikelihood`: a baseline-category logit model with a D-vector of
  correlated random effects per group (``b = L v``, ``v ~ N(0, I_D)``); each group's
  integral by adaptive Gauss-Hermite quadrature: Newton's method for the mode ``v*``
  of the log-integrand (all groups at once), then the k-point product rule in ``z``
  with ``v = v* + S z``. ``rule="symmetric"`` takes ``S = H^(-1/2)``, the symmetric
  root of the inverse negative Hessian; ``rule="cholesky"`` takes ``S = R^(-1)``
  with ``H = R'R`` (R upper triangular), the rule glmmbench documents for its AGQ
  (``glmmbench/engine/quadrature.py``: ``C_j = L_j^(-T)``). At a finite k the two rules
  are different approximations; as k grows both converge to the integral. With
  ``k = 1`` either is the Laplace approximation.
- `constrained_min` and `profile_limit`: the profile of one parameter (L-BFGS-B with
  the parameter held by equal bounds) and its limit by ``brentq``.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import optimize, special, stats

Z975 = stats.norm.ppf(0.975)
CHISQ95 = stats.chi2.ppf(0.95, 1)


# ---------------------------------------------------------------- ordinal (clmm)
class OrdinalLikelihood:
    """``-2 log L`` of ``y ~ X beta + (1 | g)``, logit cumulative link, flexible
    thresholds. ``__call__`` takes ``p = (theta_1, ..., theta_{K-1}, beta, sd)``;
    ``unconstrained`` takes ``z = (theta_1, log(theta_2 - theta_1), ..., beta, sd)``
    and returns the value and its gradient in z (every z gives ordered thresholds, so
    the nuisance thresholds of a profile move freely)."""

    def __init__(self, codes: np.ndarray, X: np.ndarray, groups: np.ndarray, K: int,
                 h: float = 0.1, lim: float = 8.0):
        self.codes, self.X, self.K = np.asarray(codes), np.asarray(X, float), K
        self.v = np.linspace(-lim, lim, int(round(2 * lim / h)) + 1)
        w = np.full(self.v.size, h)
        w[[0, -1]] *= 0.5
        self.logw = np.log(w) + stats.norm.logpdf(self.v)
        g = np.asarray(groups)
        self.G = int(g.max()) + 1
        self.g = g
        self.A = (g[None, :] == np.arange(self.G)[:, None]).astype(float)  # G x n
        K1 = K - 1
        self.is_upper = (self.codes[:, None] == np.arange(K1)[None, :]).astype(float)
        self.is_lower = (self.codes[:, None] == np.arange(1, K)[None, :]).astype(float)

    def value_and_grad(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        K1 = self.K - 1
        th, beta, sd = p[:K1], p[K1:-1], p[-1]
        upper = np.r_[th, np.inf][self.codes]
        lower = np.r_[-np.inf, th][self.codes]
        eta = (self.X @ beta)[:, None] + sd * self.v[None, :]  # n x P
        a, b = upper[:, None] - eta, lower[:, None] - eta
        # P = expit(a) - expit(b) = expit(a) expit(-b) (1 - e^(b - a)): no cancellation
        gap = -np.expm1(np.minimum(b - a, 0.0))
        logp = special.log_expit(a) + special.log_expit(-b) + np.log(gap)
        lg = self.A @ logp + self.logw[None]  # G x P
        lse = special.logsumexp(lg, axis=1)
        post = np.exp(lg - lse[:, None])[self.g]  # n x P: the group's posterior weights
        # d log P / da = f(a) / P and d log P / db = -f(b) / P, f = F (1 - F)
        da = special.expit(-a) / (special.expit(-b) * gap)
        db = -special.expit(b) / (special.expit(a) * gap)
        deta = -(da + db)
        g_th = self.is_upper.T @ (post * da).sum(1) + self.is_lower.T @ (post * db).sum(1)
        g_beta = self.X.T @ (post * deta).sum(1)
        g_sd = np.sum(post * deta * self.v[None, :])
        return -2.0 * float(lse.sum()), -2.0 * np.r_[g_th, g_beta, g_sd]

    def __call__(self, p: np.ndarray) -> float:
        return self.value_and_grad(p)[0]

    def thresholds(self, z: np.ndarray) -> np.ndarray:
        K1 = self.K - 1
        return np.cumsum(np.r_[z[0], np.exp(z[1:K1])])

    def to_unconstrained(self, p: np.ndarray) -> np.ndarray:
        K1 = self.K - 1
        return np.r_[p[0], np.log(np.diff(p[:K1])), p[K1:]]

    def unconstrained(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        K1 = self.K - 1
        p = np.r_[self.thresholds(z), z[K1:]]
        val, g = self.value_and_grad(p)
        g_th = g[:K1]
        gz = g.copy()
        tail = np.cumsum(g_th[::-1])[::-1]  # sum over k >= m of d/d theta_k
        gz[0] = tail[0]
        gz[1:K1] = np.exp(z[1:K1]) * tail[1:]
        return val, gz


# ------------------------------------------------------------- multinomial (mclogit)
def _product_rule(k: int, D: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (M x D) and log weights of the k-point product rule for N(0, I_D)."""
    z1, w1 = hermegauss(k)
    logw1 = np.log(w1 / w1.sum())
    z = np.stack([g.ravel() for g in np.meshgrid(*([z1] * D), indexing="ij")], axis=1)
    logw = sum(g.ravel() for g in np.meshgrid(*([logw1] * D), indexing="ij"))
    return z, np.asarray(logw)


class MultinomialLikelihood:
    """``-2 log L`` of a baseline-category logit model with K categories (code 0 the
    baseline): fixed design ``X`` (n x p) shared by the K - 1 logits, random design
    ``Zr`` (n x q) in each of them; a group's effects ``b = L v`` are ordered
    category by category, ``(b_1[1..q], ..., b_{K-1}[1..q])``, D = (K - 1) q.

    ``par = (beta_1, ..., beta_{K-1}, vech(L))``: the coefficients category by
    category, then L's lower triangle column by column (lme4's theta order).
    """

    def __init__(self, codes, X, Zr, groups, K: int, k: int, rule: str = "symmetric"):
        if rule not in ("symmetric", "cholesky"):
            raise ValueError(rule)
        self.rule = rule
        self.codes = np.asarray(codes)
        self.X, self.Zr = np.asarray(X, float), np.asarray(Zr, float)
        self.K1, self.p, self.q = K - 1, self.X.shape[1], self.Zr.shape[1]
        self.D = self.K1 * self.q
        self.Y = (self.codes[:, None] == np.arange(1, K)[None, :]).astype(float)
        self.g = np.asarray(groups)
        self.G = int(self.g.max()) + 1
        self.A = (self.g[None, :] == np.arange(self.G)[:, None]).astype(float)  # G x n
        self.ZZ = (self.Zr[:, :, None] * self.Zr[:, None, :]).reshape(len(self.g), -1)
        self.z, self.logw = _product_rule(k, self.D)
        rows, cols = np.tril_indices(self.D)
        order = np.lexsort((rows, cols))  # column-major lower triangle
        self.rows, self.cols = rows[order], cols[order]
        self.nbeta = self.K1 * self.p
        self._last_mode = np.zeros((self.G, self.D))

    def unpack(self, par) -> tuple[np.ndarray, np.ndarray]:
        beta = np.asarray(par[:self.nbeta], float).reshape(self.K1, self.p)
        L = np.zeros((self.D, self.D))
        L[self.rows, self.cols] = par[self.nbeta:]
        return beta, L

    def vech(self, L: np.ndarray) -> np.ndarray:
        return L[self.rows, self.cols]

    def _eta(self, lin, B) -> list[np.ndarray]:
        """The K - 1 linear predictors at random effects B (n x ... x D)."""
        extra = (1,) * (B.ndim - 2)
        out = []
        for k in range(self.K1):
            e = lin[:, k].reshape(-1, *extra) + 0.0
            for a in range(self.q):
                e = e + B[..., k * self.q + a] * self.Zr[:, a].reshape(-1, *extra)
            out.append(e)
        return out

    def _loglik_obs(self, eta: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """``log p(y_i)`` and the probabilities of categories 1..K-1 (the baseline's
        predictor is 0), everything shifted by the largest predictor."""
        extra = (1,) * (eta[0].ndim - 1)
        m = np.zeros(eta[0].shape)
        for e in eta:
            m = np.maximum(m, e)
        ex = [np.exp(e - m) for e in eta]
        total = np.exp(-m)
        for x in ex:
            total += x
        ll = -m - np.log(total)
        for k, e in enumerate(eta):
            ll += self.Y[:, k].reshape(-1, *extra) * e
        return ll, [x / total for x in ex]

    def _modes(self, lin, L):
        """Each group's mode of ``h(v) = sum_i log p(y_i | L v) - |v|^2 / 2`` and the
        negative Hessian there (the canonical link: ``L' Z' W Z L + I``)."""
        G, D, q, K1 = self.G, self.D, self.q, self.K1

        def parts(v):
            ll, pr = self._loglik_obs(self._eta(lin, (v @ L.T)[self.g]))
            h = self.A @ ll - 0.5 * (v**2).sum(1)
            sb = np.concatenate([(self.Y[:, k] - pr[k])[:, None] * self.Zr for k in range(K1)],
                                axis=1)  # the score in b, n x D
            grad = (self.A @ sb) @ L - v
            Hb = np.empty((G, K1, q, K1, q))
            for k in range(K1):
                for m in range(K1):
                    w = pr[k] * ((k == m) - pr[m])  # -d2 log p / d eta_k d eta_m
                    Hb[:, k, :, m, :] = (self.A @ (w[:, None] * self.ZZ)).reshape(G, q, q)
            return h, grad, L.T[None] @ Hb.reshape(G, D, D) @ L[None] + np.eye(D)[None]

        # a warm start (Newton converges from anywhere)
        v, h, grad, H = group_newton(parts, self._last_mode.copy(), maxiter=200,
                                     min_step=1e-12, tol=1e-11)
        assert np.abs(grad).max() < 1e-8, np.abs(grad).max()
        self._last_mode = v
        return v, H

    def __call__(self, par) -> float:
        beta, L = self.unpack(np.asarray(par, float))
        lin = self.X @ beta.T  # n x K1
        vstar, H = self._modes(lin, L)
        if self.rule == "symmetric":
            lam, U = np.linalg.eigh(H)
            S = (U * lam[:, None, :] ** -0.5) @ np.swapaxes(U, 1, 2)
        else:
            S = np.linalg.inv(np.swapaxes(np.linalg.cholesky(H), 1, 2))
        logdet_S = -0.5 * np.linalg.slogdet(H)[1]  # log |S| for either root
        G, M, D = self.G, self.z.shape[0], self.D
        V = vstar[:, None, :] + self.z @ np.swapaxes(S, 1, 2)  # G x M x D
        B = (V.reshape(-1, D) @ L.T).reshape(G, M, D)
        ll, _ = self._loglik_obs(self._eta(lin, B[self.g]))  # n x M
        # int f(y | v) phi(v) dv = |S| E_z[f(y | v(z)) phi(v(z)) / phi(z)]
        logint = (self.A @ ll - 0.5 * (V**2).sum(-1) + 0.5 * (self.z**2).sum(-1)[None]
                  + self.logw[None])
        return -2.0 * float(np.sum(logdet_S + special.logsumexp(logint, axis=1)))


# ---------------------------------------------------------------- profiles
_INNER = {"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5000, "maxcor": 30}


def constrained_min(fun, start: np.ndarray, j: int, x: float, bounds, jac: bool = False):
    """``min fun`` over every coordinate but j, which is held at x (equal bounds);
    the optimize result."""
    b = list(bounds)
    b[j] = (x, x)
    z0 = np.array(start, dtype=float)
    z0[j] = x
    return optimize.minimize(fun, z0, jac=jac, method="L-BFGS-B", bounds=b, options=_INNER)


def profile_limit(fun, z_hat: np.ndarray, j: int, target: float, step: float, bounds,
                  jac: bool = False) -> float:
    """Where ``sign(z_j - z_hat_j) sqrt(min_{others} fun - fun(z_hat))`` equals
    ``target`` (+-1.96): walk out from ``z_hat`` in ``step``s until the profile
    crosses it, then ``brentq`` between the last two points (each inner minimum warm
    started from the previous one)."""
    base = fun(z_hat)[0] if jac else fun(z_hat)
    sign = np.sign(target)
    start = {"z": np.array(z_hat, dtype=float)}

    def zeta(x):
        r = constrained_min(fun, start["z"], j, x, bounds, jac)
        start["z"] = r.x
        return sign * np.sqrt(max(r.fun - base, 0.0))

    x_prev = z_hat[j]
    for _ in range(40):
        x = x_prev + sign * step
        if zeta(x) * sign >= abs(target):
            return float(optimize.brentq(lambda t: zeta(t) - target, *sorted((x_prev, x)),
                                         xtol=1e-11, rtol=1e-13))
        x_prev = x
    raise AssertionError("the profile did not reach the target")


def group_newton(parts, v: np.ndarray, *, maxiter: int, min_step: float, tol: float):
    """Newton's method for every group's mode at once, ``v`` (groups x dims), of a
    strictly concave ``h`` given by ``parts(v) -> (h, grad, -Hessian)`` per group:
    a group's step is halved only where a full step does not improve its ``h`` (down
    to ``min_step``); stops when ``max |grad| < tol`` or after ``maxiter`` steps.
    Returns ``(v, h, grad, -Hessian)`` at the end."""
    h, grad, H = parts(v)
    for _ in range(maxiter):
        step = np.linalg.solve(H, grad[:, :, None])[:, :, 0]
        t = np.ones(v.shape[0])
        while True:
            new = v + t[:, None] * step
            h_new, g_new, H_new = parts(new)
            bad = h_new < h - 1e-12
            if not bad.any() or t.min() < min_step:
                break
            t[bad] /= 2
        v, h, grad, H = new, h_new, g_new, H_new
        if np.abs(grad).max() < tol:
            break
    return v, h, grad, H
