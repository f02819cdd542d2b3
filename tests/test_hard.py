"""`expm` on the harness's hard, stiff, large-norm, non-normal and skew cases.

Each case carries an independent reference (mpmath, extended precision or a closed
form). The default path must be accurate on every one of them, including those where
JAX's Padé returns NaN.
"""

import numpy as np
import odeexpm
import pytest
from odeexpm import harness
from odeexpm.reference import pade_expm

from .helpers import rel_err

SUITES = ["hard", "stiff", "large_norm", "nonnormal", "skew"]
# Cases whose exponential is ill-conditioned: rounding the input alone costs this much.
CONDITION_LIMITED = {"projector-8": 1e-7}


CASES = [case for name in SUITES for case in harness.get_suite(name).cases(quick=False)]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.suite}/{c.name}" for c in CASES])
def test_default_path_is_accurate(case):
    A = case.data["A"]
    dtype = np.complex128 if case.is_complex else np.float64
    X, stats = odeexpm.expm(A, return_stats=True)
    assert bool(stats.successful)
    assert int(stats.num_steps) <= 4
    assert rel_err(X, case.expected("expm", dtype)) < CONDITION_LIMITED.get(case.name, 1e-10)


def test_where_pade_fails():
    moler = harness.get_suite("hard").cases()
    moler = next(case for case in moler if case.name == "moler-badly-scaled-3x3")
    assert np.isnan(np.asarray(pade_expm(moler.data["A"]))).any()
    X = odeexpm.expm(moler.data["A"])
    assert rel_err(X, moler.expected("expm", np.float64)) < 1e-12
