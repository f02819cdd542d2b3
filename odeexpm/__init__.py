"""odeexpm: differentiable matrix exponentials as solutions of linear ODEs, with diffrax."""

from . import reference as reference
from ._adjoint import FrechetAdjoint as FrechetAdjoint
from ._expm import expm as expm
from ._expm_cond import expm_cond as expm_cond
from ._expm_frechet import expm_frechet as expm_frechet
from ._expm_linear import ExpmLinear as ExpmLinear
from ._expm_multiply import expm_multiply as expm_multiply
from ._generator import (
    AbstractGenerator as AbstractGenerator,
    Constant as Constant,
    FromFunction as FromFunction,
    Interpolated as Interpolated,
    Lindblad as Lindblad,
    Modulated as Modulated,
    PiecewiseConstant as PiecewiseConstant,
    schrodinger as schrodinger,
)
from ._operator import ShardedSparse as ShardedSparse
from ._propagator import evolve as evolve, propagator as propagator
from ._solution import RESULTS as RESULTS, Stats as Stats
from ._solver import (
    AbstractCommutatorFree as AbstractCommutatorFree,
    AbstractLinearSolver as AbstractLinearSolver,
    AbstractMagnus as AbstractMagnus,
    CFMagnus4 as CFMagnus4,
    CFMagnus6 as CFMagnus6,
    CFMagnus8 as CFMagnus8,
    Lawson as Lawson,
    Magnus2 as Magnus2,
    Magnus4 as Magnus4,
    Magnus6 as Magnus6,
    Magnus8 as Magnus8,
    Taylor as Taylor,
)
from ._term import LinearTerm as LinearTerm

__version__ = "0.1.0"
