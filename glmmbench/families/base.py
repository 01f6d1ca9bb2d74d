"""The family plug-in interface: what the layers above read of a response family.

A family is an object with a ``name`` and a ``link`` that answers, for the model
layer, the engine, the result and the harness, every question that would otherwise
be a branch on its name:

- **data** (``model.design``): ``code_response(var, weights)`` turns the evaluated
  response variable (`ResponseVariable`) into ``y``, the prior weights, the
  response's levels and trials (`CodedResponse`), with the family's data checks;
  ``residual`` (a residual variance, lme4's LMM checks), ``thresholds`` (cut points
  take the intercept's place) and ``smooths`` (smooth terms allowed) shape the design;
- **engine** (``families.make_response``, ``engine.deviance``,
  ``engine.separation``): the response object PIRLS and the deviance read
  (``families.make_response``: None for an LMM, whose likelihood is exact; a GLM
  family's `response.GLMResponse`; the categorical families' own
  ``make_response(design)``), ``prepare_design(design)`` (the design the response is
  fitted on: the multinomial's K - 1 rows per observation), ``observed_information``
  (glmmTMB's exact Hessian in the Laplace factor, or lme4's Fisher information),
  ``separation_cone`` (which of Konis's cones applies, None if not checked),
  ``fast_fit`` (lme4's ``nAGQ = 0`` applies);
- **results** (``results``, ``summary``): ``predict_types``, ``title``,
  ``saturated_loglik`` (lme4's AGQ log-likelihood convention), ``dispersion_name``,
  ``dispersion_boundary(value, mu_max)`` (why an estimated dispersion is on its
  boundary), ``simulate(rng, eta, weights, dispersion, levels, thresholds)``
  (responses drawn at the linear predictor), ``outside_support(y)`` (``refit``'s
  range check) and ``newresp(y, levels)`` (a new response coded as the design's);
- **inference** (``inference.marginal``): ``marginal`` (population-averaged
  coefficients exist for every link it allows);
- **harness**: ``r_engines``, the R engines (``reference_r``'s names) that fit it.

The GLM families (``families.glm``) answer from their registry entry
(`glm.FamilyDef`); ordinal and multinomial are classes of their own. Every member has
a default here, the value most families take, so a new family states only where it
differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glmmbench.errors import DataError, FormulaError

__all__ = ["ResponseFamily", "ResponseVariable", "CodedResponse", "code_categorical",
           "reject_cbind", "non_integer", "categorical_support"]


@dataclass(frozen=True)
class ResponseVariable:
    """The response as the model frame evaluated it, before any family coded it.

    kind : ``"num"`` (numbers), ``"lgl"`` (0/1), ``"fac"`` (a factor), ``"chr"``
        (text) or ``"cbind"`` (``cbind(successes, failures)``).
    values : the numbers (num, lgl); the factor's codes (fac); the successes (cbind).
    factor : ``() -> (codes, levels, ordered)``: R's ``factor()`` of the variable with
        its unused levels dropped (computed on demand: a numeric response's distinct
        values are only needed by the categorical families).
    parts : cbind only, ``((label, kind, values), ...)`` of the two columns.
    """

    name: str
    kind: str
    values: np.ndarray | None
    factor: Callable[[], tuple[np.ndarray, tuple[str, ...], bool]] | None = field(
        default=None, repr=False)
    parts: tuple[tuple[str, str, np.ndarray], ...] = ()


@dataclass(frozen=True)
class CodedResponse:
    """``y`` and the prior weights as the engine reads them, the response's levels
    (categorical families), a cbind response's trials and the messages lme4 would
    give on the way."""

    y: np.ndarray
    weights: np.ndarray
    levels: tuple[str, ...] | None = None
    trials: np.ndarray | None = None
    messages: tuple[str, ...] = ()


def non_integer(x: np.ndarray) -> bool:
    return bool(np.any(np.abs(x - np.round(x)) > 1e-3))


class ResponseFamily(ABC):
    """Defaults of the plug-in interface (module docstring); subclasses override."""

    name: str
    link: Any
    dispersion: Any = None
    residual: bool = False
    thresholds: bool = False
    multivariate: bool = False  # K - 1 linear predictors per observation (multinomial)
    smooths: bool = True
    fast_fit: bool = True
    observed_information: bool = True
    saturated_loglik: bool = False
    marginal: bool = False
    predict_types: tuple[str, ...] = ("response", "link")
    title: str = "Generalized linear mixed model"

    @property
    def dispersion_name(self) -> str | None:
        return None

    @property
    def lmm(self) -> bool:
        """A linear mixed model (Gaussian, identity link): no response object, the
        likelihood is exact and REML applies."""
        return self.residual and self.link.name == "identity"

    @property
    def dispersion_model(self) -> bool:
        """Whether the family has a dispersion a ``dispformula`` can model (glmmTMB's
        ``sigma()``: a Gaussian sd, the negative binomials', Gamma's, beta's...)."""
        return self.residual or self.dispersion_name is not None

    units: bool = False  # a measurement with units: its scale is checked
    r_engines: tuple[str, ...] = ()  # the R engines that fit it (reference_r's names)

    @property
    def separation_cone(self) -> str | None:
        return None

    @property
    def separable(self) -> bool:
        """Whether the family's fixed effects can be separated (infinite estimates) on
        some link it allows."""
        return self.separation_cone is not None

    @abstractmethod
    def code_response(self, var: ResponseVariable, weights: np.ndarray) -> CodedResponse:
        """``y``, weights, levels and trials from the evaluated response, with the
        family's data checks (a `DataError` naming the column)."""

    @abstractmethod
    def simulate(self, rng: np.random.Generator, eta: np.ndarray, weights: np.ndarray,
                 dispersion: float, levels: tuple[str, ...] | None,
                 thresholds: np.ndarray | None) -> Any:
        """Responses drawn at the linear predictor ``eta`` (one per observation), on
        the scale of the fitted response."""

    @abstractmethod
    def outside_support(self, y: np.ndarray, levels: tuple[str, ...] | None = None
                        ) -> tuple[np.ndarray, str, str]:
        """Which values of a new response (``refit``) the family cannot take, the
        name of its range, and what it needs instead."""

    def prepare_design(self, design: Any) -> Any:
        return design

    def dispersion_boundary(self, value: float, mu_max: float) -> str | None:
        return None

    def newresp(self, y: np.ndarray, levels: tuple[str, ...] | None) -> np.ndarray:
        """A new response (``refit``), checked by `outside_support`, as the design's
        ``y``."""
        return y

    def nobs(self, design: Any) -> int:
        """The observations of a design the family's response is fitted on."""
        return design.n


def code_categorical(var: ResponseVariable, weights: np.ndarray, family: str, *,
                     ordered: bool) -> CodedResponse:
    """A categorical response's 0-based codes and levels (ordinal: an ordered factor;
    multinomial: a factor, text or integer codes)."""
    name = var.name
    reject_cbind(var, family)
    if var.kind == "num" and non_integer(var.values) and not ordered:
        raise DataError(f"{family} response {name!r} must be categorical (a factor, text "
                        "or integer codes), not continuous numbers")
    codes, levels, is_ordered = var.factor()
    if len(levels) < 2:
        raise DataError(f"{family} response {name!r} needs at least 2 categories, "
                        f"found {len(levels)}")
    if ordered and not (var.kind == "fac" and is_ordered):
        what = "an unordered factor" if var.kind in ("fac", "chr") else "numeric"
        raise DataError(
            f"ordinal response {name!r} is {what}: it must be an ordered categorical, "
            f"e.g. data[{name!r}] = pd.Categorical(data[{name!r}], categories=[...], "
            "ordered=True) with the categories in their order")
    return CodedResponse(codes.astype(float), weights, tuple(levels))


def reject_cbind(var: ResponseVariable, family: str) -> None:
    if var.kind == "cbind":
        raise FormulaError(f"a cbind(successes, failures) response is for the binomial "
                           f"family, not {family!r}")


def categorical_support(y: np.ndarray, levels: tuple[str, ...]) -> tuple[np.ndarray, str, str]:
    """``refit``'s range check of a categorical response given as 0-based codes."""
    bad = (y != np.round(y)) | (y < 0) | (y > len(levels) - 1)
    return bad, "the family's range", (f"category codes 0 to {len(levels) - 1} "
                                       f"(levels {list(levels)})")
