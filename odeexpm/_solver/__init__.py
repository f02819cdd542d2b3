"""Solvers for linear ODEs: Taylor steps for constant generators, Magnus steps for
time-dependent ones."""

from .base import AbstractLinearSolver as AbstractLinearSolver
from .cfmagnus4 import CFMagnus4 as CFMagnus4
from .cfmagnus6 import CFMagnus6 as CFMagnus6
from .cfmagnus8 import CFMagnus8 as CFMagnus8
from .commutator_free import AbstractCommutatorFree as AbstractCommutatorFree
from .lawson import Lawson as Lawson
from .magnus import (
    AbstractMagnus as AbstractMagnus,
    AbstractStepDoublingMagnus as AbstractStepDoublingMagnus,
)
from .magnus2 import Magnus2 as Magnus2
from .magnus4 import Magnus4 as Magnus4
from .magnus6 import Magnus6 as Magnus6
from .magnus8 import Magnus8 as Magnus8
from .taylor import Taylor as Taylor
