"""Plain gradients and gradient x input."""

from __future__ import annotations

from typing import Any

import jax

from jaxsal.attribution._common import ApplyFn, check_inputs, input_gradient, poison_invalid


def gradient(
  apply_fn: ApplyFn, params: Any, x: jax.Array, target: jax.Array, *, key: jax.Array | None = None
) -> jax.Array:
  """The gradient of the target logit with respect to the input (Simonyan et al. 2014).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits [B, K]``.
    params: the model's parameters.
    x: float images ``[B, H, W, C]``.
    target: int ``[B]``, the class to explain for each image.
    key: unused (deterministic method); accepted for a uniform signature.

  Returns:
    ``[B, H, W, C]``, signed.

  Raises:
    ValueError, TypeError: bad ``x`` or ``target`` (see ``check_inputs``).

  References:
    Simonyan, Vedaldi, Zisserman, "Deep Inside Convolutional Networks", 2014.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxsal.attribution import gradient
    >>> w = jnp.arange(64 * 3.0).reshape(64, 3)  # a linear model on 8x8 grey images, 3 classes
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> maps = gradient(apply_fn, w, jnp.ones((2, 8, 8, 1)), jnp.array([2, 0]))
    >>> maps.shape, bool(jnp.allclose(maps[0].ravel(), w[:, 2]))
    ((2, 8, 8, 1), True)
  """
  del key
  x, target = check_inputs(apply_fn, params, x, target)
  return poison_invalid(input_gradient(apply_fn, params, x, target), apply_fn, params, x, target)


def gradient_x_input(
  apply_fn: ApplyFn, params: Any, x: jax.Array, target: jax.Array, *, key: jax.Array | None = None
) -> jax.Array:
  """Gradient times input (Shrikumar et al. 2016): ``x * d z_t / d x``.

  Args, Returns and Raises as ``gradient``.

  References:
    Shrikumar et al., "Not Just a Black Box", 2016.
  """
  del key
  x, target = check_inputs(apply_fn, params, x, target)
  maps = x * input_gradient(apply_fn, params, x, target)
  return poison_invalid(maps, apply_fn, params, x, target)
