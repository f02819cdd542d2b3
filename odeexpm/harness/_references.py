"""Independent high-precision references for `exp(A)` and its Fréchet derivative, cached.

A method is only as trustworthy as what it is compared with, so references never use a
method under test:

- `mpmath` at `MPMATH_DPS` digits for `n <= MPMATH_MAX_N` (seconds at most);
- beyond that, a Taylor scaling-and-squaring in NumPy's extended precision
  (`np.longdouble`, 80-bit on x86: eps ~ 1e-19, so ~3 digits of headroom over float64),
  which is fast enough at n = 128; where `np.longdouble` is just float64 (some ARM
  builds, Windows) mpmath is used at every size;
- closed forms (`Reference(expm=...)`) where the case admits one.

Derivatives come from the block identity
`exp([[A, E], [0, A]]) = [[exp(A), L_exp(A, E)], [0, exp(A)]]` at the same precision.

Slow references are stored in the user cache folder (`reference_cache_dir()`), keyed by a
hash of the input bytes, the reference kind and its precision; never in the repository.
"""

import dataclasses
import hashlib
import os
import pathlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mpmath
import numpy as np

from .. import reference

# mpmath's cost grows like n^3 with a large constant (mp_expm at 40 digits: ~0.2 s at
# n = 16, ~1 s at n = 32); up to n = 24, a derivative (a 48 x 48 block) takes seconds.
MPMATH_MAX_N = 24
MPMATH_DPS = 40
LONGDOUBLE_EPS = float(np.finfo(np.longdouble).eps)
# Extended precision is only worth using if it is wider than float64 by a margin.
LONGDOUBLE_IS_EXTENDED = LONGDOUBLE_EPS < 1e-18
# Bump when a reference algorithm changes, so that stale cache entries are not read.
CACHE_VERSION = "1"

QUANTITIES = ("expm", "vjp", "jvp")


def reference_cache_dir() -> pathlib.Path:
    """The folder for cached references and other reusable artefacts.

    `$ODEEXPM_CACHE` if set, else `$XDG_CACHE_HOME/odeexpm`, else `~/.cache/odeexpm`.

    Examples:
        >>> from odeexpm.harness import reference_cache_dir
        >>> reference_cache_dir()  # doctest: +SKIP
        PosixPath('/home/me/.cache/odeexpm')
    """
    if os.environ.get("ODEEXPM_CACHE"):
        return pathlib.Path(os.environ["ODEEXPM_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
    return base / "odeexpm"


def cache_key(kind: str, precision: str, arrays: Sequence[np.ndarray]) -> str:
    """A hash of everything a reference depends on: its kind, precision and input bytes."""
    digest = hashlib.sha256(f"{CACHE_VERSION}|{kind}|{precision}".encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:40]


def cached(
    kind: str, precision: str, arrays: Sequence[np.ndarray], compute: Callable[[], np.ndarray]
) -> np.ndarray:
    """`compute()`, stored in and reread from the reference cache.

    An unreadable entry is recomputed; an unwritable cache folder only costs the reuse.
    """
    path = reference_cache_dir() / "references" / f"{kind}-{cache_key(kind, precision, arrays)}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        pass
    value = np.asarray(compute())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so that a concurrent or interrupted run never leaves half a file.
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy", delete=False) as file:
            np.save(file, value, allow_pickle=False)
        os.replace(file.name, path)
    except OSError:
        pass
    return value


def high_precision_method(n: int) -> str:
    """`"mpmath"` or `"longdouble"`: which route `precise_expm` takes for size `n`."""
    return "mpmath" if n <= MPMATH_MAX_N or not LONGDOUBLE_IS_EXTENDED else "longdouble"


def longdouble_expm(A: np.ndarray) -> np.ndarray:
    """`exp(A)` by Taylor scaling and squaring in `np.longdouble`, rounded to float64 or
    complex128.

    Scaled to `||A||_1 / 2^s <= 1/2`, the series converges fast (about 20 terms reach
    extended-precision eps); `s` squarings follow. Independent of every method under test
    (those use Padé or Runge-Kutta steps in at most float64).

    Examples:
        >>> import numpy as np
        >>> from odeexpm.harness import longdouble_expm
        >>> float(longdouble_expm(np.array([[1.0]]))[0, 0])
        2.718281828459045
    """
    A = np.asarray(A)
    is_complex = np.iscomplexobj(A)
    wide = np.clongdouble if is_complex else np.longdouble
    M = A.astype(wide)

    def norm(X):
        return float(np.max(np.sum(np.abs(X), axis=0))) if X.size else 0.0

    squarings = max(0, int(np.ceil(np.log2(max(norm(M), 1e-300) / 0.5))))
    M = M / wide(2.0) ** squarings  # a power of two: exact
    term = np.eye(A.shape[0], dtype=wide)
    total = term.copy()
    for k in range(1, 60):
        term = term @ M / wide(k)
        total = total + term
        if norm(term) <= 0.1 * LONGDOUBLE_EPS * norm(total):
            break
    for _ in range(squarings):
        total = total @ total
    return total.astype(np.complex128 if is_complex else np.float64)


def precise_expm(A: np.ndarray, dps: int = MPMATH_DPS) -> np.ndarray:
    """`exp(A)` at high precision (mpmath at `dps` digits, or extended precision beyond
    `MPMATH_MAX_N`), cached.

    Examples:
        >>> import numpy as np
        >>> from odeexpm.harness import precise_expm
        >>> X = precise_expm(np.array([[0.0, 1.0], [-1.0, 0.0]]))
        >>> bool(np.allclose(X, [[np.cos(1), np.sin(1)], [-np.sin(1), np.cos(1)]]))
        True
    """
    A = np.asarray(A)
    if high_precision_method(A.shape[0]) == "mpmath":
        return cached("expm-mpmath", f"dps={dps}", [A], lambda: reference.mp_expm(A, dps=dps))
    return cached("expm-longdouble", f"eps={LONGDOUBLE_EPS:.3e}", [A], lambda: longdouble_expm(A))


def precise_frechet(A: np.ndarray, E: np.ndarray, dps: int = MPMATH_DPS) -> np.ndarray:
    """`L_exp(A, E)`, the Fréchet derivative, by the block identity at high precision
    (mpmath at `dps` digits, or extended precision beyond `MPMATH_MAX_N`), cached.

    Examples:
        >>> import numpy as np
        >>> from odeexpm.harness import precise_frechet
        >>> float(precise_frechet(np.array([[0.0]]), np.array([[1.0]]))[0, 0])
        1.0
    """
    A, E = np.asarray(A), np.asarray(E)
    n = A.shape[0]
    if high_precision_method(n) == "mpmath":
        return cached(
            "frechet-mpmath",
            f"dps={dps}",
            [A, E],
            lambda: reference.mp_frechet(A, E, dps=dps),
        )

    def block_identity():
        block = np.block([[A, E], [np.zeros_like(A), A]])
        return longdouble_expm(block)[:n, n:]

    return cached("frechet-longdouble", f"eps={LONGDOUBLE_EPS:.3e}", [A, E], block_identity)


def closed_form_2x2(A: np.ndarray) -> np.ndarray:
    """`exp(A)` for any 2 x 2 matrix by its closed form, evaluated with mpmath.

    With `m = tr(A) / 2` and `d = sqrt(m^2 - det A)` (complex if need be),
    `exp(A) = e^m (cosh(d) I + sinh(d) / d (A - m I))`; `sinh(d) / d -> 1` as `d -> 0`
    (the defective case), so near-defective inputs are exact too.

    Examples:
        >>> import numpy as np
        >>> from odeexpm.harness import closed_form_2x2
        >>> X = closed_form_2x2(np.array([[0.0, 2.0], [-2.0, 0.0]]))
        >>> bool(np.allclose(X, [[np.cos(2), np.sin(2)], [-np.sin(2), np.cos(2)]]))
        True
    """
    A = np.asarray(A)
    if A.shape != (2, 2):
        raise ValueError(f"closed_form_2x2: A must be 2 x 2; got {A.shape}.")
    with mpmath.workdps(MPMATH_DPS + 10):
        a, b, c, d_ = (mpmath.mpmathify(complex(x)) for x in A.ravel())
        m = (a + d_) / 2
        d = mpmath.sqrt(m * m - (a * d_ - b * c))
        sinhc = mpmath.sinh(d) / d if d != 0 else mpmath.mpf(1)
        scale = mpmath.exp(m)
        entries = [
            scale * (mpmath.cosh(d) + sinhc * (a - m)),
            scale * sinhc * b,
            scale * sinhc * c,
            scale * (mpmath.cosh(d) + sinhc * (d_ - m)),
        ]
        X = np.array([complex(x) for x in entries]).reshape(2, 2)
    return X if np.iscomplexobj(A) else X.real.copy()


def closed_form_nilpotent_shift(A: np.ndarray) -> np.ndarray:
    """`exp(A)` for `A = lambda I + N` with `N` nilpotent (a Jordan block, or `lambda = 0`):
    `e^lambda (I + N + N^2/2! + ... + N^(n-1)/(n-1)!)`, a finite sum, in mpmath.

    Examples:
        >>> import numpy as np
        >>> from odeexpm.harness import closed_form_nilpotent_shift
        >>> closed_form_nilpotent_shift(np.array([[0.0, 6.0], [0.0, 0.0]])).tolist()
        [[1.0, 6.0], [0.0, 1.0]]
    """
    A = np.asarray(A)
    n = A.shape[0]
    shift = A[0, 0]
    N = A - shift * np.eye(n)
    if not (np.all(np.diag(A) == shift) and np.all(np.linalg.matrix_power(N, n) == 0)):
        raise ValueError("closed_form_nilpotent_shift: A is not lambda * I + (nilpotent).")
    with mpmath.workdps(MPMATH_DPS):
        Nmp = mpmath.matrix(N.tolist())
        term, total = mpmath.eye(n), mpmath.eye(n)
        for k in range(1, n):
            term = term * Nmp / k
            total = total + term
        total = total * mpmath.exp(shift)
        return np.array([[float(total[i, j]) for j in range(n)] for i in range(n)])


@dataclasses.dataclass(frozen=True)
class Reference:
    """The exact answers of a constant-generator case, as a callable
    `reference(data, quantity) -> np.ndarray`.

    `data` holds `"A"` and the directions `"W"` (cotangent of the VJP) and `"E"` (tangent
    of the JVP); `quantity` is one of

    - `"expm"`: `exp(A)`, by the closed form `expm` if given, else `precise_expm`;
    - `"vjp"`: `L_exp(A^T, W)`, which is what `jax.grad` of the loss `Re sum(W * exp(A))`
      returns. For real `A`, `A^T = A^H` and this is the gradient of the design notes. For
      complex `A` JAX returns the conjugate of the steepest-ascent direction
      `dL/d conj(A) = L_exp(A^H, conj(W))`; the two agree, as the harness tests check;
    - `"jvp"`: `L_exp(A, E)`, the directional derivative.

    Derivatives always come from the block identity at high precision.

    Examples:
        >>> import numpy as np
        >>> from odeexpm.harness import Reference, closed_form_2x2
        >>> ref = Reference(label="closed form", expm=closed_form_2x2)
        >>> ref({"A": np.zeros((2, 2))}, "expm").tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """

    label: str = "high precision"
    expm: Callable[[np.ndarray], np.ndarray] | None = None
    dps: int = MPMATH_DPS

    def __call__(self, data: Mapping[str, np.ndarray], quantity: str) -> np.ndarray:
        A = np.asarray(data["A"])
        if quantity == "expm":
            return precise_expm(A, self.dps) if self.expm is None else np.asarray(self.expm(A))
        if quantity == "vjp":
            return precise_frechet(A.T, data["W"], self.dps)
        if quantity == "jvp":
            return precise_frechet(A, data["E"], self.dps)
        raise ValueError(f"Reference: unknown quantity {quantity!r}; expected one of {QUANTITIES}.")

    def describe(self, quantity: str, n: int) -> str:
        """A short name of the route taken, for reports: e.g. `"mpmath-40"`."""
        if quantity == "expm" and self.expm is not None:
            return self.label
        route = high_precision_method(n)
        return f"mpmath-{self.dps}" if route == "mpmath" else "longdouble"


def longdouble_action(
    values: np.ndarray, indices: np.ndarray, B: np.ndarray, t: float
) -> np.ndarray:
    """`exp(tA) B` for a sparse `A` in COO form (`indices`: rows, columns), in NumPy's
    extended precision, rounded to float64 or complex128.

    Substeps `exp(tA/s)` with `||tA/s||_1 <= 4`, each a Taylor series summed until its
    terms fall below extended-precision eps (the largest term is at most `4^4/4! ~ 11`
    times the state: about one of the ~19 digits is lost to cancellation). Products go
    through `np.add.reduceat` on row-sorted entries: no float64 sparse kernel is involved.

    Examples:
        >>> import numpy as np
        >>> from odeexpm.harness import longdouble_action
        >>> values, indices = np.array([-1.0, 1.0]), np.array([[0, 0], [1, 0]])
        >>> y = longdouble_action(values, indices, np.array([1.0, 0.0]), 1.0)
        >>> [round(float(x), 12) for x in y]
        [0.367879441171, 0.632120558829]
    """
    is_complex = np.iscomplexobj(values) or np.iscomplexobj(B)
    wide = np.clongdouble if is_complex else np.longdouble
    order = np.lexsort((indices[:, 1], indices[:, 0]))
    rows, columns = indices[order, 0], indices[order, 1]
    scaled = values[order].astype(wide) * wide(t)
    n = B.shape[0]
    norm1 = float(np.max(np.bincount(columns, np.abs(scaled.astype(np.complex128)), minlength=n)))
    substeps = max(1, int(np.ceil(norm1 / 4.0)))
    scaled = scaled / wide(substeps)
    occupied, starts = np.unique(rows, return_index=True)

    def product(y):
        terms = scaled.reshape((-1,) + (1,) * (y.ndim - 1)) * y[columns]
        out = np.zeros_like(y)
        out[occupied] = np.add.reduceat(terms, starts, axis=0)
        return out

    def magnitude(y) -> float:
        return float(np.max(np.abs(y))) if y.size else 0.0

    y = np.asarray(B).astype(wide)
    for _ in range(substeps):
        term, total = y, y.copy()
        for k in range(1, 200):
            term = product(term) / wide(k)
            total = total + term
            if magnitude(term) <= 0.1 * LONGDOUBLE_EPS * magnitude(total):
                break
        y = total
    return y.astype(np.complex128 if is_complex else np.float64)


@dataclasses.dataclass(frozen=True)
class ActionReference:
    """`exp(tA) B` at high precision, cached: `precise_expm(tA) @ B` for a dense `A`
    (mpmath or extended precision), `longdouble_action` for a sparse one.

    Examples:
        >>> import numpy as np
        >>> from odeexpm.harness import ActionReference
        >>> data = {"A": np.zeros((2, 2)), "B": np.ones(2), "t": np.asarray(1.0)}
        >>> ActionReference()(data, "action").tolist()
        [1.0, 1.0]
    """

    def __call__(self, data: Mapping[str, np.ndarray], quantity: str) -> np.ndarray:
        if quantity != "action":
            raise ValueError(f"ActionReference: unknown quantity {quantity!r}.")
        B, t = np.asarray(data["B"]), float(data["t"])
        if "A" in data:
            # The high-precision exponential, rounded, times B in float64: that product
            # adds only about eps * ||exp(tA)|| ||B||.
            return precise_expm(t * np.asarray(data["A"])) @ B
        values, indices = np.asarray(data["values"]), np.asarray(data["indices"])
        precision = f"eps={LONGDOUBLE_EPS:.3e}"
        return cached(
            "action-longdouble",
            precision,
            [values, indices, B, np.asarray(t)],
            lambda: longdouble_action(values, indices, B, t),
        )

    def describe(self, quantity: str, n: int, sparse: bool = False) -> str:
        if sparse:
            return (
                "longdouble"
                if LONGDOUBLE_IS_EXTENDED
                else "float64 Taylor (no extended precision here)"
            )
        return f"mpmath-{MPMATH_DPS}" if high_precision_method(n) == "mpmath" else "longdouble"


# The propagator reference: diffrax's Dopri8 on a plain ODETerm, far tighter than any
# method under test is asked for.
PROPAGATOR_RTOL = 1e-14
PROPAGATOR_MAX_STEPS = 200_000


@dataclasses.dataclass(frozen=True)
class PropagatorReference:
    """`U(t1, t0)` of `dU/dt = A(t) U` for `A = generator(data)`, by diffrax's `Dopri8`
    at `rtol = atol = 1e-14` in double precision (64-bit mode switched on for the
    computation only), on a plain `diffrax.ODETerm` with the complex state as a real
    pair: none of odeexpm's solvers, terms or defaults is involved. Cached by the
    case's arrays and `key` (name the generator's structure: its coefficient functions
    are code, not data).

    Pass `exact(data) -> U` for cases with a closed form; it is used instead.
    """

    generator: Callable[[Mapping[str, Any]], Any]
    key: str = ""
    exact: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None

    def __call__(self, data: Mapping[str, np.ndarray], quantity: str) -> np.ndarray:
        if quantity != "propagator":
            raise ValueError(f"PropagatorReference: unknown quantity {quantity!r}.")
        if self.exact is not None:
            return np.asarray(self.exact(data))
        arrays = [np.asarray(data[key]) for key in sorted(data)] + [self._fingerprint(data)]
        return cached(
            f"propagator-dopri8-{self.key}",
            f"rtol={PROPAGATOR_RTOL:g}",
            arrays,
            lambda: self._solve(data),
        )

    def _fingerprint(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        """`A(t)` at a few times: the generator's code enters the cache key too, so an
        edited coefficient function never reads a stale reference."""
        import jax
        import jax.numpy as jnp

        with jax.enable_x64(True):
            A = self.generator({key: jnp.asarray(value) for key, value in data.items()})
            t0, t1 = float(data["t0"]), float(data["t1"])
            return np.stack(
                [np.asarray(A(t0 + f * (t1 - t0), None)) for f in (0.0, 0.3183, 0.7071)]
            )

    def _solve(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        import diffrax
        import jax
        import jax.numpy as jnp

        with jax.enable_x64(True):
            arrays = {key: jnp.asarray(value) for key, value in data.items()}
            A = self.generator(arrays)
            t0, t1 = arrays["t0"], arrays["t1"]
            n = A(t0, None).shape[-1]

            def field(t, U, args):
                re, im = U
                M = A(t, None)
                Mr, Mi = jnp.real(M), jnp.imag(M)
                return (Mr @ re - Mi @ im, Mr @ im + Mi @ re)

            eye = jnp.eye(n, dtype=jnp.float64)
            solution = diffrax.diffeqsolve(
                diffrax.ODETerm(field),
                diffrax.Dopri8(),
                t0,
                t1,
                None,
                (eye, jnp.zeros_like(eye)),
                stepsize_controller=diffrax.PIDController(
                    rtol=PROPAGATOR_RTOL, atol=PROPAGATOR_RTOL
                ),
                max_steps=PROPAGATOR_MAX_STEPS,
            )
            re, im = (np.asarray(x[-1]) for x in solution.ys)
        complex_case = any(np.iscomplexobj(value) for value in data.values())
        return re + 1j * im if complex_case else re

    def describe(self, quantity: str, n: int) -> str:
        return "closed form" if self.exact is not None else "Dopri8 1e-14"
