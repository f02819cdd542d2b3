"""odeexpm: differentiable matrix exponentials as solutions of linear ODEs, with diffrax."""

from . import reference
from ._adjoint import FrechetAdjoint
from ._expm import expm
from ._expm_multiply import expm_multiply
from ._generators import (
    AbstractGenerator,
    Constant,
    FromFunction,
    Interpolated,
    Modulated,
    PiecewiseConstant,
)
from ._layers import ExpmLinear
from ._magnus import CFMagnus4, Magnus2, Magnus4, Magnus6, Magnus8, WithCommutators
from ._propagator import evolve, propagator
from ._solve import RESULTS, Stats
from ._taylor import Taylor
from ._term import LinearTerm

__all__ = [
    "AbstractGenerator",
    "CFMagnus4",
    "Constant",
    "ExpmLinear",
    "FrechetAdjoint",
    "FromFunction",
    "Interpolated",
    "LinearTerm",
    "Magnus2",
    "Magnus4",
    "Magnus6",
    "Magnus8",
    "Modulated",
    "PiecewiseConstant",
    "RESULTS",
    "Stats",
    "Taylor",
    "WithCommutators",
    "evolve",
    "expm",
    "expm_multiply",
    "propagator",
    "reference",
]
__version__ = "0.1.0"
