"""glmmbench: native Python GLMMs, checked live against R."""

from glmmbench import datasets
from glmmbench.errors import DataError, FamilyError, FormulaError, GLMMError
from glmmbench.fit import fit
from glmmbench.inference.tables import anova
from glmmbench.results import GLMMResult

__all__ = ["fit", "anova", "GLMMResult", "datasets", "GLMMError", "FormulaError", "DataError",
           "FamilyError"]
__version__ = "0.1.0"
