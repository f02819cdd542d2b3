"""Operators: what a generator offers when no dense matrix is formed (products, and a
disk holding the spectrum)."""

from .banded import BandedOperator as BandedOperator, banded_form as banded_form, gram as gram
from .base import (
    AbstractOperator as AbstractOperator,
    Renumbering as Renumbering,
    apply_in_row_order as apply_in_row_order,
)
from .combination import OperatorCombination as OperatorCombination
from .convert import (
    apply as apply,
    as_operator as as_operator,
    diagonal as diagonal,
    is_operator as is_operator,
)
from .dense import DenseOperator as DenseOperator
from .layout import SparseLayout as SparseLayout, plan_layout as plan_layout
from .lineax import LineaxOperator as LineaxOperator
from .liouvillian import (
    Liouvillian as Liouvillian,
    SumOfSquares as SumOfSquares,
    decay_of as decay_of,
)
from .scaled import ScaledOperator as ScaledOperator
from .sharded import ShardedSparse as ShardedSparse
from .sparse import (
    CooOperator as CooOperator,
    EllOperator as EllOperator,
    SparseOperator as SparseOperator,
)
