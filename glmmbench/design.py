"""Design: formula + data -> the frozen matrices a model is fitted from.

Interface contract (shared by the engine stages):

- ``RandomTerm``: one random-effect term after lme4's expansion (``(x || g)``
  becomes two terms, ``(1 | a/b)`` becomes ``(1 | b:a)`` and ``(1 | a)``).
  Its random effects for level ``j`` and component ``k`` sit at
  ``b[offset + j * q + k]`` (lme4's level-major order).
- ``Design``: everything the deviance needs, with terms in lme4's order
  (stably by decreasing number of levels), so that ``theta`` is lme4's theta:
  for each term, the lower triangle of its q x q relative covariance factor
  in column-major order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RandomTerm", "Design", "build_design"]


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term ``(cnames | group)``.

    Attributes
    ----------
    group : str
        Grouping factor's name as R's ``VarCorr`` shows it (``"Subject"``,
        ``"b:a"``); for ``||`` terms the duplicates keep the same name here
        (R prints ``g`` and ``g.1``; see ``varcorr_name``).
    varcorr_name : str
        The ``grp`` label of ``as.data.frame(VarCorr(m))``.
    cnames : tuple of str
        Names of the term's columns as R gives them (``"(Intercept)"``, ``"Days"``).
    levels : tuple of str
        Levels of the grouping factor that occur in the data, in R's order.
    codes : ndarray of int, shape (n,)
        Level index (0..nlevels-1) of every observation.
    Xr : ndarray, shape (n, q)
        The term's raw model matrix (columns ``cnames``).
    """

    group: str
    varcorr_name: str
    cnames: tuple[str, ...]
    levels: tuple[str, ...]
    codes: np.ndarray
    Xr: np.ndarray

    @property
    def q(self) -> int:
        return self.Xr.shape[1]

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def ntheta(self) -> int:
        return self.q * (self.q + 1) // 2


@dataclass(frozen=True)
class Design:
    """A model's data, frozen.

    Attributes
    ----------
    y : ndarray, shape (n,)
        Response. Binomial: proportion of successes (``weights`` carry the trials);
        binary factors: 0 for the first level, 1 otherwise. Ordinal / multinomial:
        integer category codes 0..K-1 (``response_levels`` names them).
    X : ndarray, shape (n, p)
        Fixed-effects model matrix, columns named ``fixef_names`` as R's
        ``model.matrix`` names them (treatment contrasts).
    weights : ndarray, shape (n,)
        Prior weights (binomial: trials times any user weights).
    offset : ndarray, shape (n,)
    terms : tuple of RandomTerm, in lme4's order.
    n_dropped : int
        Rows dropped because a used column was missing (as ``na.omit``).
    messages : tuple of str
        Notes made while building (rows dropped, ...).
    """

    formula: str
    response_name: str
    y: np.ndarray
    X: np.ndarray
    fixef_names: tuple[str, ...]
    weights: np.ndarray
    offset: np.ndarray
    terms: tuple[RandomTerm, ...]
    response_levels: tuple[str, ...] | None = None
    n_dropped: int = 0
    messages: tuple[str, ...] = ()
    spec: Any = field(default=None, repr=False, compare=False)

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def ngroups(self) -> dict[str, int]:
        """Levels per grouping factor, as lme4's ``ngrps`` (one entry per factor)."""
        out: dict[str, int] = {}
        for t in self.terms:
            out.setdefault(t.group, t.nlevels)
        return out

    def new_data(self, data: pd.DataFrame) -> Design:
        """Rebuild X, offset and the terms' codes/Xr for new data with the same encodings.

        Grouping levels unseen in the fit get code -1 (population-level prediction).
        The response is not required in ``data``.
        """
        raise NotImplementedError  # filled in by build_design's spec


def build_design(formula: str, data: pd.DataFrame, family: str = "gaussian", *,
                 weights=None, offset=None) -> Design:
    """Parse ``formula`` (lme4 syntax) against ``data`` and return the frozen Design."""
    raise NotImplementedError
