"""Checking your own model against R in your own pytest suite.

With glmmbench installed (and R with lme4, as `make setup` installs), the
`reference_r` fixture comes from glmmbench's pytest plugin:

    pytest examples/test_with_r.py
"""

import numpy as np
import pandas as pd

from glmmbench import fit
from glmmbench.testing import assert_matches


def _data(seed=1, groups=30, size=8):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), size)
    x = rng.standard_normal(g.size)
    eta = -0.4 + 0.7 * x + rng.normal(0, 0.8, groups)[g]
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x,
                         "g": pd.Categorical(g)})


def test_my_binary_model_matches_lme4(reference_r):
    data = _data()
    native = fit("y ~ x + (1 | g)", data, "binomial")
    r = reference_r("lme4", "y ~ x + (1 | g)", data, family="binomial")
    table = assert_matches(native, r)  # raises with every comparison that fails
    assert table["within_tol"].all()
