"""The validation harness: named cases with independent references, methods under test,
and the measurements that compare them (`odeexpm compare` on the command line).

Examples:
    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)
    >>> from odeexpm import harness
    >>> records = harness.run(suites=["hard"], methods=["pade"], quick=True, repeats=1)
    >>> records[0].case, records[0].status
    ('moler-vanloan-2x2', 'ok')
    >>> paths = harness.write_outputs(records, "/tmp/odeexpm-example", plots=False)
    >>> sorted(paths)
    ['csv', 'json', 'report']
"""

from . import (
    _action as _action,  # the action suite and methods
    _lindblad as _lindblad,  # the Lindblad suite
    _suites as _suites,  # registers the built-in suites
    _testmats as _testmats,  # the test matrices of Al-Mohy and Higham, and SciPy's
    _time_dependent as _time_dependent,  # the time-dependent suite and methods
)
from ._cases import (
    Case,
    Suite,
    action_case,
    expm_case,
    get_suite,
    list_suites,
    propagator_case,
    register_suite,
    suite,
    unregister_suite,
)
from ._methods import (
    Method,
    get_method,
    jvp_of,
    list_methods,
    register_method,
    unregister_method,
    vjp_of,
)
from ._references import (
    ActionReference,
    PropagatorReference,
    Reference,
    closed_form_2x2,
    closed_form_nilpotent_shift,
    longdouble_action,
    longdouble_expm,
    precise_expm,
    precise_frechet,
    reference_cache_dir,
)
from ._report import print_table, read_records, write_outputs
from ._run import DEFAULT_METHODS, DTYPES, QUICK_METHODS, Record, arguments, run

__all__ = [
    "DEFAULT_METHODS",
    "DTYPES",
    "QUICK_METHODS",
    "ActionReference",
    "Case",
    "Method",
    "PropagatorReference",
    "Record",
    "Reference",
    "Suite",
    "action_case",
    "arguments",
    "closed_form_2x2",
    "closed_form_nilpotent_shift",
    "expm_case",
    "get_method",
    "get_suite",
    "jvp_of",
    "list_methods",
    "list_suites",
    "longdouble_action",
    "longdouble_expm",
    "precise_expm",
    "precise_frechet",
    "print_table",
    "propagator_case",
    "read_records",
    "reference_cache_dir",
    "register_method",
    "register_suite",
    "run",
    "suite",
    "unregister_method",
    "unregister_suite",
    "vjp_of",
    "write_outputs",
]
