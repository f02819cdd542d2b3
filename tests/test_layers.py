"""`odeexpm.ExpmLinear`: orthogonality, agreement with the Padé closed form (values and
gradients), transformations, dtypes and argument checks."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import odeexpm
import pytest
from odeexpm.reference import pade_expm

from .helpers import rel_err

SIZE = 5


def pade_forward(layer, x):
    """The layer's forward pass with the weight from the Padé closed form."""
    y = pade_expm(layer.exponent) @ x
    return y if layer.bias is None else y + layer.bias


def loss(forward, layer, xs):
    # A nonlinear loss over a batch, so that the cotangent on the weight is generic.
    return jnp.sum(jnp.sin(jax.vmap(lambda x: forward(layer, x))(xs)))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
def test_skew_weight_is_orthogonal(dtype):
    layer = odeexpm.ExpmLinear(SIZE, key=jr.key(0), dtype=dtype)
    # A larger exponent than the initialisation gives, so that the test is not trivial.
    layer = eqx.tree_at(lambda l: l.generator, layer, 3 * layer.generator)
    W = layer.weight
    assert W.dtype == dtype
    np.testing.assert_allclose(W.conj().T @ W, np.eye(SIZE), atol=1e-12)
    if dtype == jnp.float64:
        assert abs(float(jnp.linalg.det(W)) - 1) < 1e-12  # a rotation: det exp(A) = e^tr A


@pytest.mark.parametrize("structure", ["skew", "general"])
def test_forward_and_gradient_match_pade(structure):
    layer = odeexpm.ExpmLinear(SIZE, key=jr.key(1), structure=structure)
    xs = jr.normal(jr.key(2), (3, SIZE))
    x = xs[0]
    assert rel_err(layer(x), pade_forward(layer, x)) < 1e-12
    grads = jax.grad(lambda l: loss(type(l).__call__, l, xs))(layer)
    reference = jax.grad(lambda l: loss(pade_forward, l, xs))(layer)
    assert rel_err(grads.generator, reference.generator) < 1e-10
    assert rel_err(grads.bias, reference.bias) < 1e-10


def test_jit_and_vmap():
    layer = odeexpm.ExpmLinear(SIZE, key=jr.key(3), use_bias=False)
    assert layer.bias is None
    xs = jr.normal(jr.key(4), (7, SIZE))
    ys = eqx.filter_jit(lambda layer, xs: jax.vmap(layer)(xs))(layer, xs)
    assert ys.shape == (7, SIZE)
    np.testing.assert_allclose(ys, xs @ pade_expm(layer.exponent).T, rtol=1e-12, atol=1e-13)


def test_float32():
    layer = odeexpm.ExpmLinear(SIZE, key=jr.key(5), dtype=jnp.float32)
    W = layer.weight
    assert W.dtype == jnp.float32 and layer(jnp.ones(SIZE, jnp.float32)).dtype == jnp.float32
    np.testing.assert_allclose(W.T @ W, np.eye(SIZE), atol=1e-5)
    assert rel_err(W, pade_expm(layer.exponent.astype(jnp.float64))) < 1e-5


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(size=0), ValueError, "size"),
        (dict(size=2.0), ValueError, "size"),
        (dict(size=True), ValueError, "size"),
        (dict(structure="symmetric"), ValueError, "structure"),
        (dict(dtype=jnp.int32), TypeError, "dtype"),
        (dict(dtype=jnp.float16), TypeError, "dtype"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"size": SIZE, **kwargs}
    with pytest.raises(error, match=match):
        odeexpm.ExpmLinear(kwargs.pop("size"), key=jr.key(0), **kwargs)


@pytest.mark.parametrize("shape", [(SIZE + 1,), (2, SIZE), ()])
def test_bad_input_shape(shape):
    layer = odeexpm.ExpmLinear(SIZE, key=jr.key(0))
    with pytest.raises(ValueError, match="jax.vmap"):
        layer(jnp.ones(shape))
