"""odeexpm: differentiable matrix exponentials as solutions of linear ODEs, with diffrax."""

from . import reference
from ._expm import expm
from ._generators import AbstractGenerator, Constant
from ._solve import RESULTS, Stats
from ._taylor import Taylor
from ._term import LinearTerm

__all__ = [
    "AbstractGenerator",
    "Constant",
    "LinearTerm",
    "RESULTS",
    "Stats",
    "Taylor",
    "expm",
    "reference",
]
__version__ = "0.1.0"
