"""Configuration shared by the tests (tests/) and the doctests (odeexpm/)."""

import os

import jax
import pytest

# Accuracy claims are made in float64; the library itself never changes this flag.
jax.config.update("jax_enable_x64", True)


def _session_folder(tmp_path_factory):
    """A folder of this test run, shared by the workers of `pytest -n`."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(autouse=True, scope="session")
def compilation_cache(tmp_path_factory):
    """JAX's persistent compilation cache, for this run only: a worker reuses what the
    other compiled (the tests compile many of the same solves)."""
    jax.config.update("jax_compilation_cache_dir", str(_session_folder(tmp_path_factory) / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    yield
    jax.config.update("jax_compilation_cache_dir", None)


@pytest.fixture(autouse=True, scope="session")
def reference_cache(tmp_path_factory):
    """One cache of mpmath and extended-precision references for the whole test session,
    shared by the workers of `pytest -n`; never the user's own cache."""
    path = _session_folder(tmp_path_factory) / "odeexpm-cache"
    previous = os.environ.get("ODEEXPM_CACHE")
    os.environ["ODEEXPM_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("ODEEXPM_CACHE", None)
    else:
        os.environ["ODEEXPM_CACHE"] = previous
