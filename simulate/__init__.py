"""Multilevel data with a known truth, for every family glmmbench fits.

>>> import numpy as np, simulate
>>> sim = simulate.generate("gaussian_slopes", np.random.default_rng(1))
>>> sim.formula
'y ~ x + (1 + x | g)'

Standalone: imports numpy, scipy and pandas only, never glmmbench.
"""

from ._catalogue import SCENARIOS
from ._generate import SimulatedData, generate
from ._icc import icc_to_variance, latent_residual_variance, variance_to_icc
from ._links import FAMILY_LINKS
from ._scenario import DESIGNS, SIZE_DISTS, Scenario
from ._smooths import SMOOTHS
from ._truth import formula

__all__ = [
    "DESIGNS",
    "FAMILY_LINKS",
    "SCENARIOS",
    "SIZE_DISTS",
    "SMOOTHS",
    "Scenario",
    "SimulatedData",
    "formula",
    "generate",
    "icc_to_variance",
    "latent_residual_variance",
    "variance_to_icc",
]
