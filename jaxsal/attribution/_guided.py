"""Guided backpropagation and the deconvnet: gradients through modified ReLUs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxsal.attribution._common import ApplyFn, check_inputs, input_gradient, poison_invalid
from jaxsal.attribution._relu_rewrite import replace_relu


def _modified_relu(guided: bool):
  """``max(x, 0)`` forward; backward passes ``relu(g)``, masked by ``x > 0`` if guided."""

  @jax.custom_vjp
  def relu(x):
    return jnp.maximum(x, 0)

  def fwd(x):
    return jnp.maximum(x, 0), x

  def bwd(x, g):
    g = jnp.maximum(g, 0)
    if guided:
      g = jnp.where(x > 0, g, jnp.zeros_like(g))
    return (g,)

  relu.defvjp(fwd, bwd)
  return relu


_GUIDED_RELU = _modified_relu(guided=True)
_DECONV_RELU = _modified_relu(guided=False)


def guided_backprop(
  apply_fn: ApplyFn, params: Any, x: jax.Array, target: jax.Array, *, key: jax.Array | None = None
) -> jax.Array:
  """Guided backpropagation (Springenberg et al. 2015).

  The gradient of the target logit, except that at every ReLU the backward
  pass keeps only positive gradients at positive inputs:
  ``g_in = relu(g_out) * 1[x > 0]``. The ReLUs are found by rewriting the
  traced program of ``apply_fn``, so any model whose activations are
  ``jax.nn.relu`` works, whatever built it; the forward values are unchanged.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits [B, K]`` using ``jax.nn.relu``.
    params: the model's parameters.
    x: float images ``[B, H, W, C]``.
    target: int ``[B]``.
    key: unused; accepted for a uniform signature.

  Returns:
    ``[B, H, W, C]``.

  Raises:
    ValueError: bad ``x``/``target`` (see ``check_inputs``), or ``apply_fn``
      contains no ``jax.nn.relu`` (a ReLU written ``jnp.maximum(x, 0)`` is
      not recognised).

  References:
    Springenberg, Dosovitskiy, Brox, Riedmiller, "Striving for Simplicity:
    The All Convolutional Net", 2015.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.attribution import gradient, guided_backprop
    >>> w = jnp.linspace(-1.0, 1.0, 64 * 3).reshape(64, 3)  # weights of both signs
    >>> apply_fn = lambda w, x: jax.nn.relu(x.reshape(len(x), -1)) @ w
    >>> x, t = jnp.ones((2, 8, 8, 1)), jnp.array([0, 1])
    >>> maps = guided_backprop(apply_fn, w, x, t)  # negative gradients stop at the ReLU
    >>> bool(jnp.allclose(maps, jax.nn.relu(gradient(apply_fn, w, x, t))))
    True
  """
  del key
  x, target = check_inputs(apply_fn, params, x, target)
  rewritten = replace_relu(apply_fn, _GUIDED_RELU, name="guided_backprop")
  return poison_invalid(input_gradient(rewritten, params, x, target), apply_fn, params, x, target)


def deconvnet(
  apply_fn: ApplyFn, params: Any, x: jax.Array, target: jax.Array, *, key: jax.Array | None = None
) -> jax.Array:
  """The deconvnet attribution (Zeiler & Fergus 2014).

  As ``guided_backprop``, but every ReLU's backward pass is ``relu(g_out)``
  whatever its input: the gradient is rectified instead of masked by the
  forward activation.

  Args, Returns and Raises as ``guided_backprop``.

  References:
    Zeiler, Fergus, "Visualizing and Understanding Convolutional Networks", 2014.
  """
  del key
  x, target = check_inputs(apply_fn, params, x, target)
  rewritten = replace_relu(apply_fn, _DECONV_RELU, name="deconvnet")
  return poison_invalid(input_gradient(rewritten, params, x, target), apply_fn, params, x, target)
