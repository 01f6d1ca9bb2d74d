"""Exceptions raised where data and formulas enter the engine."""

from __future__ import annotations

__all__ = ["GLMMError", "FormulaError", "DataError", "FamilyError"]


class GLMMError(ValueError):
    """Base class of every input error raised by glmmbench."""


class FormulaError(GLMMError):
    """The formula cannot be parsed, or names a term the data cannot support."""


class DataError(GLMMError):
    """A column is missing, has the wrong type, or lies outside the family's support."""


class FamilyError(GLMMError):
    """Unknown family or link, or a link the family does not allow."""
