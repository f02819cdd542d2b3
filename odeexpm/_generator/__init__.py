"""Generators: the matrix-valued functions `A(t, args)` of a linear ODE."""

from .base import AbstractGenerator as AbstractGenerator
from .constant import Constant as Constant
from .function import FromFunction as FromFunction
from .interpolated import Interpolated as Interpolated
from .lindblad import Lindblad as Lindblad
from .modulated import Modulated as Modulated
from .piecewise_constant import PiecewiseConstant as PiecewiseConstant
from .schrodinger import schrodinger as schrodinger
