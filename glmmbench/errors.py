"""Exceptions raised where data and formulas enter the engine."""

from __future__ import annotations

__all__ = ["GLMMError", "FormulaError", "DataError", "FamilyError", "NotSupportedError",
           "UnsupportedTermError", "NumericalError"]


class GLMMError(ValueError):
    """Base class of every input error raised by glmmbench."""


class FormulaError(GLMMError):
    """The formula cannot be parsed, or names a term the data cannot support."""


class DataError(GLMMError):
    """A column is missing, has the wrong type, or lies outside the family's support."""


class FamilyError(GLMMError):
    """Unknown family or link, or a link the family does not allow."""


class NotSupportedError(GLMMError):
    """A model R fits that the native engine does not (a tensor-product smooth, a basis
    it lacks): a missing feature, not a mistake in the input. Studies record such fits
    as "unsupported", not as failures (``glmmbench.harness.study.unsupported``)."""


class UnsupportedTermError(FormulaError, NotSupportedError):
    """A formula term R accepts that the native engine does not fit (a tensor-product
    smooth, a basis it lacks): both a formula error and a missing feature."""


class NumericalError(GLMMError):
    """The computation broke down numerically (a factorization of a matrix that should
    be positive definite failed, an overflow): data on extreme scales, or a model the
    data cannot support."""
