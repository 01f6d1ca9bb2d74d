"""glmmbench: native Python GLMMs, checked live against R."""

from glmmbench import datasets

__all__ = ["datasets"]
__version__ = "0.1.0"
