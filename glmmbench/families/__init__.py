"""Response families: what the engine needs to know of the conditional distribution.

- `glm`: links and the GLM families (gaussian, binomial, poisson, the negative
  binomials, Gamma), their densities, deviance residuals, variances and R's numerics;
- `response`: a GLM response as PIRLS and the Laplace/AGQ deviance see it (working
  weights, the conditional log-density, dispersion parameters, starts);
- `ordinal`, `multinomial`: the categorical responses (clmm's cumulative links,
  baseline-category logits).

The public names of `glm` are re-exported here (``from glmmbench.families import
get_family``), and `make_response` picks the response a family's model has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from glmmbench.families.glm import (
    FAMILIES,
    FAMILY_ALIASES,
    LINKS,
    Family,
    FamilyDef,
    Link,
    get_family,
    get_link,
)
from glmmbench.families.multinomial import MultinomialResponse
from glmmbench.families.ordinal import OrdinalFamily, OrdinalResponse
from glmmbench.families.response import GLMResponse

if TYPE_CHECKING:
    from glmmbench.model.design import Design

__all__ = ["Link", "Family", "FamilyDef", "LINKS", "FAMILIES", "FAMILY_ALIASES", "get_link",
           "get_family", "make_response", "EXPECTED_INFORMATION_FAMILIES"]

# lme4's expected (Fisher) information in the Laplace factor: glmer's families, so that
# values equal glmer's; the others take the exact Hessian, as glmmTMB
EXPECTED_INFORMATION_FAMILIES = ("binomial", "poisson")


def make_response(design: Design, family: Family | OrdinalFamily
                  ) -> GLMResponse | OrdinalResponse | MultinomialResponse | None:
    """The GLM response, None for an LMM.

    The Laplace factor uses the expected information for the families glmer fits
    (binomial, Poisson: lme4's approximation, so that values equal glmer's) and the
    exact Hessian for the rest, whose reference is glmmTMB (they differ for
    non-canonical links only; ``reference_r.known_discrepancies``
    ``lme4-noncanonical-laplace``, ``lme4-nb-expected-information-laplace``).
    """
    if family.name == "gaussian" and family.link.name == "identity":
        return None
    if family.name == "ordinal":
        return OrdinalResponse(design.y, design.weights, design.offset, family,
                               design.response_levels)
    if family.name == "multinomial":  # the expanded design (multinomial.expand_design)
        K1 = len(design.response_levels) - 1
        Y = design.y.reshape(-1, K1)
        codes = np.where(Y.any(axis=1), Y.argmax(axis=1) + 1, 0)
        return MultinomialResponse(codes, design.weights[::K1], design.offset,
                                   design.response_levels, family)
    return GLMResponse(design.y, design.weights, design.offset, family, trials=design.trials,
                       observed=family.name not in EXPECTED_INFORMATION_FAMILIES)
