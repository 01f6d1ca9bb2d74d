"""True smooth functions for additive (GAMM) scenarios.

The covariate of a smooth is ``x ~ Uniform(0, 1)``. Every function integrates to
zero over [0, 1], so it meets mgcv's identifiability constraint (smooths centred
over the covariate) in the population and the intercept keeps its meaning: the
true ``(Intercept)`` of ``y ~ s(x) + (1 | g)`` is the scenario's ``intercept``.
"""

from __future__ import annotations

import numpy as np

#: grid on which ``truth["smooth"]["values"]`` is tabulated
SMOOTH_GRID = np.linspace(0.0, 1.0, 101)


def _sin(x: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * x)


def _wave(x: np.ndarray) -> np.ndarray:
    # an asymmetric wiggle: a slow sine plus a faster cosine, both mean zero on [0, 1]
    return 0.8 * np.sin(np.pi * (2 * x - 0.5)) + 0.4 * np.cos(4 * np.pi * x)


SMOOTHS = {
    "sin": _sin,
    "wave": _wave,
}
