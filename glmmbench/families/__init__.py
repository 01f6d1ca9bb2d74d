"""Response families: what the engine needs to know of the conditional distribution.

- `base`: the plug-in interface every family answers (`ResponseFamily`): the
  response's coding and data checks, the facts the design, engine, result and harness
  read instead of branching on a family's name;
- `glm`: links and the GLM families (gaussian, binomial, poisson, the negative
  binomials, Gamma), their densities, deviance residuals, variances and R's numerics;
- `glmmtmb`: glmmTMB's families in the same registry (beta, the zero-truncated
  counts, generalized Poisson);
- `response`: a GLM response as PIRLS and the Laplace/AGQ deviance see it (working
  weights, the conditional log-density, dispersion parameters, starts);
- `ordinal`, `multinomial`: the categorical responses (clmm's cumulative links,
  baseline-category logits).

The public names of `glm` are re-exported here (``from glmmbench.families import
get_family``); `make_family` makes any family object from its name, and
`make_response` the response a family's model is fitted with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from glmmbench.errors import FamilyError
from glmmbench.families import glmmtmb  # noqa: F401  (registers glmmTMB's families)
from glmmbench.families.base import (
    CodedResponse,
    ResponseFamily,
    ResponseVariable,
)
from glmmbench.families.glm import (
    FAMILIES,
    FAMILY_ALIASES,
    LINKS,
    MIN_ABS_RESPONSE,
    Family,
    FamilyDef,
    Link,
    get_family,
    get_link,
)
from glmmbench.families.multinomial import MultinomialFamily, MultinomialResponse
from glmmbench.families.ordinal import (
    THRESHOLDS,
    OrdinalFamily,
    OrdinalResponse,
    get_cumulative_link,
)
from glmmbench.families.response import GLMResponse

if TYPE_CHECKING:
    from glmmbench.model.design import Design

__all__ = ["Link", "Family", "FamilyDef", "LINKS", "FAMILIES", "FAMILY_ALIASES", "get_link",
           "get_family", "make_family", "make_response", "ResponseFamily",
           "ResponseVariable", "CodedResponse", "NATIVE_FAMILIES", "MIN_ABS_RESPONSE"]

# every family fit() takes, by R's name (aliases: FAMILY_ALIASES)
NATIVE_FAMILIES = (*FAMILIES, "ordinal", "multinomial")


def make_family(family: str | ResponseFamily, link: str | None = None, *,
                threshold: str | None = None, aliases: bool = True) -> ResponseFamily:
    """The family object of a name (R's, or an alias) with its link (default: the
    family's own) and, for ordinal models, the threshold structure (clmm's
    ``"flexible"``, the default, ``"equidistant"``, ``"symmetric"``). A family object
    is returned as it is. Unknown names and links (and, with ``aliases=False``, an
    alias: ``build_design`` takes R's names only), and a threshold for another
    family, are a `FamilyError`."""
    if isinstance(family, ResponseFamily):
        return family
    name = FAMILY_ALIASES.get(family, family) if isinstance(family, str) and aliases \
        else family
    if name not in NATIVE_FAMILIES:
        raise FamilyError(f"unknown family {family!r}; valid families: "
                          f"{', '.join(repr(f) for f in NATIVE_FAMILIES)}")
    if threshold is not None and name != "ordinal":
        raise FamilyError(f"threshold={threshold!r} applies to family='ordinal' only, not "
                          f"{name!r}")
    if name == "ordinal":
        if threshold is not None and threshold not in THRESHOLDS:
            raise FamilyError(f"threshold must be one of {', '.join(THRESHOLDS)}, not "
                              f"{threshold!r}")
        return OrdinalFamily(get_cumulative_link(link), threshold or "flexible")
    if name == "multinomial":
        if link not in (None, "logit"):
            raise FamilyError(f"link {link!r} is not available for family 'multinomial' "
                              "(baseline-category logits): use link=None or 'logit'")
        return MultinomialFamily()
    return get_family(name, link)


def make_response(design: Design, family: ResponseFamily
                  ) -> GLMResponse | OrdinalResponse | MultinomialResponse | None:
    """The response the engine fits, None for an LMM (its likelihood is exact; with a
    ``dispformula`` a Gaussian model is a GLMM, its sd modelled per observation).

    A GLM family's Laplace factor uses lme4's expected information where the
    family's reference is glmer (``FamilyDef.observed_information`` False: binomial,
    Poisson, so that values equal glmer's) and the exact Hessian for the rest, whose
    reference is glmmTMB (they differ for non-canonical links only;
    ``reference_r.known_discrepancies`` ``lme4-noncanonical-laplace``,
    ``lme4-nb-expected-information-laplace``). The categorical families build their own.
    """
    if family.lmm and design.disp_X is None:
        return None
    if isinstance(family, Family):
        return GLMResponse(design.y, design.weights, design.offset, family,
                           trials=design.trials, observed=family.observed_information,
                           disp_X=design.disp_X)
    return family.make_response(design)
