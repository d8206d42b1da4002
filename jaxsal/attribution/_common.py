"""Checks and helpers shared by the attribution methods."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal._checks import check_images

ApplyFn = Callable[[Any, jax.Array], jax.Array]

# True while a method runs other methods on inputs it has already checked.
_NESTED = contextvars.ContextVar("jaxsal_attribution_nested", default=False)


@contextlib.contextmanager
def nested_calls() -> Iterator[None]:
  """Marks the methods traced inside as called by a method that checked its inputs already.

  Their ``poison_invalid`` returns their maps unchanged: the outer method
  makes the maps of its invalid images NaN once, on its own maps (inside a
  ``scan`` or ``vmap`` body the check would be repeated per step, and on
  inputs the outer method may have perturbed).
  """
  token = _NESTED.set(True)
  try:
    yield
  finally:
    _NESTED.reset(token)


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def num_classes(apply_fn: ApplyFn, params: Any, x: jax.Array) -> int:
  """The number of logits ``apply_fn`` returns, from shapes alone (no computation)."""
  out = jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct(x.shape, x.dtype))
  if len(out.shape) != 2 or out.shape[0] != x.shape[0]:
    raise ValueError(
      f"apply_fn must return logits [B, num_classes] = [{x.shape[0]}, K]; got shape {out.shape}"
    )
  return int(out.shape[1])


def check_inputs(
  apply_fn: ApplyFn, params: Any, x: Any, target: Any
) -> tuple[jax.Array, jax.Array]:
  """Validates ``x`` and ``target`` and returns them as arrays.

  Shapes and dtypes are checked always; values (NaN or inf in ``x``,
  ``target`` in ``[0, num_classes)``) whenever they are concrete, i.e.
  outside ``jit``, where they raise a ValueError. Under ``jit`` the values
  are not known when the method is traced, and one mechanism covers all
  three: the method's maps of an image that holds NaN or inf, or whose
  target is out of range, are NaN (``poison_invalid``), and the maps of the
  other images are what they would be without it (batched == per image).
  Never another class's map, a silent zero map, or a host callback.

  Raises:
    ValueError / TypeError: with the argument's name, what it got and what was expected.
  """
  check_images(x, "x")
  x = jnp.asarray(x)
  target = jnp.asarray(target)
  if target.ndim == 0:
    raise ValueError(
      f"target must be an int array of shape [B] = [{x.shape[0]}]; got a scalar. "
      "Use jnp.full((B,), c) for one class for every image."
    )
  if target.shape != (x.shape[0],):
    raise ValueError(
      f"target must have shape [B] = [{x.shape[0]}] (one class per image); "
      f"got shape {tuple(target.shape)}"
    )
  if not jnp.issubdtype(target.dtype, jnp.integer):
    raise TypeError(f"target must be an integer array; got dtype {target.dtype}")
  k = num_classes(apply_fn, params, x)
  if _is_concrete(target):
    t = np.asarray(target)
    bad = t[(t < 0) | (t >= k)]
    if bad.size:
      raise ValueError(
        f"target must lie in [0, {k}) (the model has {k} classes); got {bad.tolist()[:5]}"
      )
  if _is_concrete(x):
    values = np.asarray(x).reshape(x.shape[0], -1)
    nan = np.isnan(values).any(-1)
    if nan.any():
      raise ValueError(
        f"x contains NaN (images {np.flatnonzero(nan).tolist()[:10]}); attributions of NaN "
        "inputs would be NaN everywhere: give finite images"
      )
    inf = np.isinf(values).any(-1)
    if inf.any():
      raise ValueError(
        f"x contains inf (images {np.flatnonzero(inf).tolist()[:10]}); attributions of "
        "infinite inputs are not finite: give finite images"
      )
  # Under jit the values are unknown here: poison_invalid makes the maps of
  # the images with NaN or inf (or a target out of range) NaN.
  return x, target


def poison_invalid(
  maps: jax.Array, apply_fn: ApplyFn, params: Any, x: Any, target: Any, *, axis: int = 0
) -> jax.Array:
  """``maps`` with NaN for every image whose ``x`` is not finite or whose target is out of range.

  The one check of values under ``jit``, where ``check_inputs`` cannot see
  them: an image with NaN or inf, or an out-of-range target (which would
  otherwise give another class's map, ``-1`` the last class's, or an
  all-zero map; an infinite input a map that may even look finite), gets an
  all-NaN map; the other images' maps are untouched. The NaN maps are
  caught by any finite check downstream (``jaxsal explain`` refuses
  non-finite maps). Outside ``jit`` (``x`` and ``target`` concrete)
  ``check_inputs`` has raised already, and inside a method that called
  others (``nested_calls``) the outer method poisons its own maps: then
  ``maps`` is returned unchanged.

  Args:
    maps: a method's maps, with the batch on ``axis`` (``[B, ...]``, or
      ``[K, B, ...]`` with ``axis=1``).
    apply_fn, params, x, target: the method's arguments (``target`` may be
      None: only ``x`` is checked).
    axis: the batch axis of ``maps``.
  """
  if _NESTED.get() or (_is_concrete(x) and (target is None or _is_concrete(target))):
    return maps
  x = jnp.asarray(x)
  bad = ~jnp.isfinite(x).reshape(x.shape[0], -1).all(-1)
  if target is not None:
    k = num_classes(apply_fn, params, x)
    target = jnp.asarray(target)
    bad = bad | (target < 0) | (target >= k)
  shape = [1] * maps.ndim
  shape[axis] = x.shape[0]
  return jnp.where(bad.reshape(shape), jnp.asarray(jnp.nan, maps.dtype), maps)


def target_logits(apply_fn: ApplyFn, params: Any, x: jax.Array, target: jax.Array) -> jax.Array:
  """``logits[b, target[b]]`` for each image: ``[B]``."""
  logits = apply_fn(params, x)
  return jnp.take_along_axis(logits, target[:, None].astype(jnp.int32), axis=1)[:, 0]


def input_gradient(apply_fn: ApplyFn, params: Any, x: jax.Array, target: jax.Array) -> jax.Array:
  """``d logits[b, target[b]] / d x[b]`` for every image, in one backward pass.

  Summing the target logits over the batch gives each image's gradient
  because images do not interact in an eval-mode classifier.
  """
  return jax.grad(lambda v: jnp.sum(target_logits(apply_fn, params, v, target)))(x)
