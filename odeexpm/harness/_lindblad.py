"""The Lindblad suite: superoperators `odeexpm.propagator(odeexpm.Lindblad(H, Ls), t0, t1)`
of open quantum systems, on column-stacked `vec(rho)`.

References are independent of the matrix form: the `n^2 x n^2` Liouvillian assembled
from Kronecker products (`vec(A X B) = (B^T kron A) vec(X)`), exponentiated at high
precision where it is constant, else solved by diffrax's Dopri8 at 1e-14
(`PropagatorReference`).
"""

import jax.numpy as jnp
import numpy as np

from .. import Lindblad, Modulated
from ._cases import Case, propagator_case, suite
from ._references import PropagatorReference, precise_expm
from ._time_dependent import Sinusoid, _drive

SIGMA_MINUS = np.array([[0.0, 1.0], [0.0, 0.0]])  # |0><1|
PAULI_X = np.array([[0.0, 1.0], [1.0, 0.0]])
PAULI_Z = np.diag([1.0, -1.0])


def kronecker_liouvillian(H, jumps, xp=np):
    """The superoperator of `-i[H, .] + sum_k (L_k . L_k^H - 1/2 {L_k^H L_k, .})` on
    column-stacked `vec(rho)`, from Kronecker products."""
    n = H.shape[-1]
    eye = xp.eye(n)
    K = sum((xp.conj(L).T @ L for L in jumps), xp.zeros((n, n)))
    S = -1j * (xp.kron(eye, H) - xp.kron(H.T, eye)) - 0.5 * (xp.kron(eye, K) + xp.kron(K.T, eye))
    return S + sum((xp.kron(xp.conj(L), L) for L in jumps), xp.zeros((n * n, n * n)))


def _lindblad(data):
    """`Lindblad(H0 + f(t) H1, jumps)`, `f` the `Sinusoid` of `data["drive"]`."""
    H = Modulated(data["hamiltonian"], data["drive_operator"][None], [Sinusoid(data["drive"])])
    return Lindblad(H, list(data["jumps"]))


def _liouvillian(data):
    """The same master equation as `_lindblad`, vectorized with Kronecker products."""
    drift = kronecker_liouvillian(data["hamiltonian"], list(data["jumps"]), jnp)
    drive = kronecker_liouvillian(data["drive_operator"], [], jnp)
    return Modulated(drift, drive[None], [Sinusoid(data["drive"])])


def _case(name, H0, H1, jumps, drive, T, source, exact=None) -> Case:
    n = H0.shape[0]
    data = {
        "hamiltonian": H0.astype(complex),
        "drive_operator": H1.astype(complex),
        "jumps": np.stack(jumps).astype(complex),
        "drive": drive,
    }
    norm = np.abs(kronecker_liouvillian(H0, jumps)).sum(0).max()
    norm += np.abs(drive[1]) * np.abs(kronecker_liouvillian(H1, [])).sum(0).max()
    return propagator_case(
        name,
        _lindblad,
        data,
        0.0,
        T,
        n=n * n,
        norm1=T * norm,
        reference=PropagatorReference(_liouvillian, key=f"lindblad-{name}", exact=exact),
        source=source,
    )


@suite("lindblad", methods=("propagator", "rk-dopri8"))
def lindblad(quick: bool) -> list[Case]:
    """Open quantum systems: the superoperator of a Lindblad master equation."""
    gamma, gamma_phi, omega, T = 0.7, 0.2, 1.3, 3.0
    H = 0.5 * omega * PAULI_Z
    jumps = [np.sqrt(gamma) * SIGMA_MINUS, np.sqrt(gamma_phi / 2) * PAULI_Z]
    qubit = _case(
        "qubit-decay-dephasing",
        H,
        np.zeros((2, 2)),
        jumps,
        _drive(0.0, 0.0),
        T,
        f"Qubit, H = {omega:g}/2 Z, decay rate {gamma:g}, dephasing {gamma_phi:g}, T = {T:g}: "
        "the exponential of the Kronecker Liouvillian at high precision.",
        exact=lambda data: precise_expm(T * kronecker_liouvillian(H, jumps)),
    )
    if quick:
        return [qubit]
    n = 6
    a = np.diag(np.sqrt(np.arange(1.0, n)), 1)
    kerr = a.T @ a + 0.25 * a.T @ a.T @ a @ a
    return [
        qubit,
        _case(
            "driven-damped-qubit",
            0.5 * 4.0 * PAULI_Z,
            PAULI_X,
            [np.sqrt(0.3) * SIGMA_MINUS],
            _drive(0.0, 0.8, 4.0),
            10.0,
            "Resonantly driven qubit with decay: H = 2 Z + 0.8 cos(4t) X, rate 0.3, T = 10.",
        ),
        _case(
            "kerr-oscillator-6",
            kerr,
            a + a.T,
            [np.sqrt(0.5) * a],
            _drive(0.0, 1.5, 1.0),
            5.0,
            "Driven Kerr oscillator with loss, 6 levels: H = a^H a + a^H a^H a a / 4 "
            "+ 1.5 cos(t) (a + a^H), L = sqrt(0.5) a, T = 5.",
        ),
    ]
