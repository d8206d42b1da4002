"""Maps for every class, or a set of classes, in one compiled call."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal import _checks
from jaxsal.attribution._common import check_inputs, nested_calls, num_classes, poison_invalid


def class_maps_hook(method: Callable) -> Callable | None:
  """``method``'s own way to explain many classes at once, if it has one.

  A method may carry ``method.class_maps_hook(apply_fn, params, x, targets,
  **kwargs) -> [K, B, ...]`` for targets ``[K, B]``, cheaper than vmapping it
  over the targets: RISE's forward passes serve every class, and a
  competitive method (CGI) needs every class's base map only once, not once
  per target.
  """
  return getattr(method, "class_maps_hook", None)


def check_classes(classes: Any, k: int, batch: int) -> jax.Array:
  """Checks a class set (``[K]`` or ``[K, B]``, non-empty, in range, no repeats per image); ``[K, B]``."""
  c = jnp.asarray(classes)
  if c.ndim not in (1, 2) or c.shape[0] == 0:
    raise ValueError(
      f"classes must be a non-empty int array [K] (the same classes for every "
      f"image) or [K, B]; got shape {tuple(c.shape)}"
    )
  if c.ndim == 2 and c.shape[1] != batch:
    raise ValueError(f"classes of shape [K, B] must have B = {batch}; got {tuple(c.shape)}")
  if not jnp.issubdtype(c.dtype, jnp.integer):
    raise TypeError(f"classes must be integers; got dtype {c.dtype}")
  if not isinstance(c, jax.core.Tracer):
    arr = np.asarray(c)
    bad = arr[(arr < 0) | (arr >= k)]
    if bad.size:
      raise ValueError(f"classes must lie in [0, {k}); got {np.unique(bad).tolist()[:5]}")
    cols = arr.reshape(arr.shape[0], -1)
    for col in cols.T:
      if len(np.unique(col)) != len(col):
        raise ValueError(f"classes must not repeat within an image's set; got {col.tolist()}")
  return c if c.ndim == 2 else jnp.broadcast_to(c[:, None], (c.shape[0], batch))


def for_classes(method: Callable, classes: Any, *, chunk_size: int | None = None) -> Callable:
  """Turns ``method`` into one that explains each of ``classes``, vmapped over targets.

  Args:
    method: an attribution method ``method(apply_fn, params, x, target, **kw)``.
    classes: int ``[K]`` (the same classes for every image) or ``[K, B]``.
    chunk_size: explain this many classes at a time (``lax.map`` over chunks),
      bounding memory for 1000-class models; default all at once. Ignored
      for methods with a ``class_maps_hook`` (``rise``, whose forward passes
      already serve every class, and competitive methods such as ``cgi``):
      their own ``chunk_size`` bounds memory.

  Returns:
    ``fn(apply_fn, params, x, **kw) -> [K, B, H, W, C]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxsal.attribution import for_classes, gradient
    >>> w = jnp.arange(64 * 3.0).reshape(64, 3)  # a linear model on 8x8 grey images, 3 classes
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> maps = for_classes(gradient, [0, 2])(apply_fn, w, jnp.ones((4, 8, 8, 1)))
    >>> maps.shape, bool(jnp.allclose(maps[1, 3].ravel(), w[:, 2]))
    ((2, 4, 8, 8, 1), True)
  """

  @functools.wraps(method)
  def explain(apply_fn, params, x, **kwargs):
    x, _ = check_inputs(apply_fn, params, x, jnp.zeros((x.shape[0],), jnp.int32))
    targets = check_classes(classes, num_classes(apply_fn, params, x), x.shape[0])
    maps = class_maps(method, apply_fn, params, x, targets, kwargs, chunk_size=chunk_size)
    return poison_invalid(maps, apply_fn, params, x, None, axis=1)

  return explain


def class_maps(
  method: Callable,
  apply_fn,
  params,
  x: jax.Array,
  targets: jax.Array,
  kwargs: dict | None = None,
  *,
  chunk_size: int | None = None,
) -> jax.Array:
  """``method``'s maps for targets ``[K, B]`` (unchecked, repeats allowed): ``[K, B, ...]``.

  ``kwargs`` go to ``method`` (a dict, so that a method's own ``chunk_size``
  never meets this function's, which chunks the classes).

  The building block of ``for_classes``, ``competition`` and ``var``: callers
  have checked ``x`` and the targets. Methods with a ``class_maps_hook``
  serve every target through it; the others are vmapped over the targets,
  ``chunk_size`` at a time if given.
  """
  if chunk_size is not None:
    _checks.check_positive_int(chunk_size, "chunk_size")
  kwargs = dict(kwargs or {})
  one = lambda t: method(apply_fn, params, x, t, **kwargs)
  with nested_calls():
    hook = class_maps_hook(method)
    if hook is not None:
      return hook(apply_fn, params, x, targets, **kwargs)
    if chunk_size is None or chunk_size >= targets.shape[0]:
      return jax.vmap(one)(targets)
    return jax.lax.map(one, targets, batch_size=int(chunk_size))


def all_classes(method: Callable, *, chunk_size: int | None = None) -> Callable:
  """Turns ``method`` into one that explains every class: ``[K, B, H, W, C]``.

  See ``for_classes``; ``K`` is the model's number of logits.
  """

  @functools.wraps(method)
  def explain(apply_fn, params, x, **kwargs):
    k = num_classes(apply_fn, params, jnp.asarray(x))
    return for_classes(method, np.arange(k), chunk_size=chunk_size)(apply_fn, params, x, **kwargs)

  return explain
