"""The R side of glmmbench: reference fits with lme4, glmmTMB, ordinal, mgcv, gamm4.

Fits run in a pool of spawned worker processes, each with its own embedded R
(rpy2); results come back as FitRecord dicts of plain Python values, named the
glmmbench way. See ``reference_r/CONVENTIONS.md`` for what each field means per
engine and ``known_discrepancies`` for R-side quirks parity checks must know.
"""

from .api import describe_in_r, fit_reference
from .errors import RError, RTimeout, RWorkerDied
from .worker import configure, shutdown

__all__ = [
    "RError",
    "RTimeout",
    "RWorkerDied",
    "configure",
    "describe_in_r",
    "fit_reference",
    "shutdown",
]
