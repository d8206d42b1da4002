"""VAR class-relevant maps (Walter, Vreeken & Fischer 2025) over any attribution method.

For candidate classes ``c_1..c_K`` of an image and base maps ``A_k``:
``P = softmax_k(T * |A_k|)`` element-wise, and the target's map is
``A_t * P_t * 1[P_t - 1/K > tau]``: attribution that several classes share
is damped, attribution that only the target has is kept.

Class sets have a fixed number of slots so that a batch compiles once; a slot
that repeats an earlier one of its image is *invalid* and leaves both the
softmax and ``K``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal import _checks
from jaxsal.attribution._classes import check_classes, class_maps
from jaxsal.attribution._common import check_inputs, nested_calls, num_classes, poison_invalid

CLASS_SETS = ("contrastive", "all")
# The official code's thresholds: 0.01 for the contrastive set, 0.1 for given classes.
DEFAULT_TAU = {"contrastive": 0.01, "given": 0.1, "all": 0.1}


def _check_temperature(temperature: Any) -> float:
  if (
    isinstance(temperature, bool)
    or not isinstance(temperature, (int, float, np.number))
    or not math.isfinite(temperature)
    or temperature <= 0
  ):
    raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
  return float(temperature)


def _check_tau(tau: Any) -> float:
  if isinstance(tau, bool) or not isinstance(tau, (int, float, np.number)) or not 0.0 <= tau < 1.0:
    raise ValueError(f"tau must be a number in [0, 1); got {tau!r}")
  return float(tau)


def var_from_maps(
  maps: jax.Array,
  *,
  temperature: float = 10.0,
  tau: float = 0.1,
  valid: jax.Array | None = None,
  use_abs: bool = True,
) -> jax.Array:
  """VAR for every class of a set, from the set's base maps.

  Args:
    maps: ``[K, B, ...]``, the base maps of each image's ``K`` candidate classes.
    temperature: ``T > 0`` of the softmax (10 in the paper).
    tau: threshold in ``[0, 1)`` on ``P_k - 1/K`` (strict ``>``, as the official code).
    valid: optional bool ``[K, B]``: which slots take part (the others are
      left out of the softmax and of ``K``, and their output is 0).
    use_abs: the softmax compares ``|A_k|`` (the paper); False compares signed maps.

  Returns:
    ``[K, B, ...]``: ``A_k * P_k * 1[P_k - 1/K > tau]`` for each slot ``k``.

  Raises:
    ValueError: bad ``temperature``, ``tau`` or ``valid`` shape.

  References:
    Walter, Vreeken & Fischer, "Now you see me! Attribution distributions
    reveal what is truly important for a prediction", 2025.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxsal.attribution import var_from_maps
    >>> maps = jnp.array([[[1.0, 1.0]], [[1.0, 0.0]]])  # [K=2 classes, B=1, 2 pixels]
    >>> var_from_maps(maps, tau=0.1).round(3).tolist()  # the shared pixel is dropped
    [[[0.0, 1.0]], [[0.0, 0.0]]]
  """
  t = _check_temperature(temperature)
  tau = _check_tau(tau)
  if maps.ndim < 2:
    raise ValueError(f"maps must be [K, B, ...]; got shape {maps.shape}")
  k, b = maps.shape[:2]
  if valid is None:
    valid = jnp.ones((k, b), bool)
  if valid.shape != (k, b):
    raise ValueError(f"valid must have shape [K, B] = [{k}, {b}]; got {tuple(valid.shape)}")
  vb = valid.reshape((k, b) + (1,) * (maps.ndim - 2))
  a = jnp.abs(maps) if use_abs else maps
  p = jax.nn.softmax(jnp.where(vb, t * a, -jnp.inf), axis=0)
  count = valid.sum(0).astype(maps.dtype).reshape((1, b) + (1,) * (maps.ndim - 2))
  keep = vb & (p - 1.0 / count > tau)
  return jnp.where(keep, maps * p, jnp.zeros_like(maps))


def contrastive_classes(
  logits: jax.Array, target: jax.Array, *, top_n: int = 2
) -> tuple[jax.Array, jax.Array]:
  """The paper's contrastive class set: ``[K, B]`` slots and their validity, ``K = top_n + 1``.

  The ``top_n`` most probable classes and the least probable one; if the
  target is not among them it is put first and, as in the official code
  (which cuts the list to ``top_n + 1``), the least probable class is dropped.
  Repeats (possible when probabilities tie) are marked invalid.

  Args:
    logits: ``[B, num_classes]``.
    target: int ``[B]``.
    top_n: how many of the most probable classes (2 in the paper);
      ``1 <= top_n < num_classes``.

  Returns:
    ``(classes, valid)``: int32 ``[top_n + 1, B]`` and bool ``[top_n + 1, B]``.
  """
  _checks.check_positive_int(top_n, "top_n")
  k = logits.shape[1]
  if top_n >= k:
    raise ValueError(f"top_n must be < the number of classes ({k}); got {top_n}")
  top = jax.lax.top_k(logits, top_n)[1].astype(jnp.int32)  # [B, n]
  least = jnp.argmin(logits, axis=1).astype(jnp.int32)[:, None]  # [B, 1]
  target = target.astype(jnp.int32)[:, None]
  have = (top == target).any(1, keepdims=True) | (least == target)
  slots = jnp.where(have, jnp.concatenate([top, least], 1), jnp.concatenate([target, top], 1))
  return slots.T, _first_occurrences(slots).T


def _first_occurrences(slots: jax.Array) -> jax.Array:
  """bool ``[B, K]``: True where a slot does not repeat an earlier slot of its row."""
  same = slots[:, :, None] == slots[:, None, :]
  earlier = jnp.tril(jnp.ones(same.shape[1:], bool), k=-1)
  return ~(same & earlier).any(2)


def var(
  method: Callable,
  *,
  classes: Any = "contrastive",
  temperature: float = 10.0,
  tau: float | None = None,
  top_n: int = 2,
  use_abs: bool = True,
  chunk_size: int | None = None,
) -> Callable:
  """VAR over ``method``: the target's map, damped where other classes' maps are as strong.

  The returned function has the attribution contract
  ``fn(apply_fn, params, x, target, *, key=None, classes=None, **hparams) -> maps``
  (``hparams`` go to ``method``); the base maps of every class of the set
  come from one compiled call.

  Args:
    method: an attribution method.
    classes: the candidate classes. ``'contrastive'`` (default): per image,
      the ``top_n`` most probable classes and the least probable one, the
      target put first if missing (see ``contrastive_classes``); ``'all'``:
      every class; or given classes, an int array ``[K]`` (the same for every
      image) or ``[K, B]`` (for example a grid's cell labels, transposed),
      which must contain each image's target. The returned function also
      takes ``classes=`` per call, overriding this (an array that changes
      from batch to batch, under one ``jit``).
    temperature: ``T > 0`` (10 in the paper).
    tau: threshold in ``[0, 1)``; None: the official code's, 0.01 for
      ``'contrastive'``, 0.1 for given classes and ``'all'``.
    top_n: the contrastive set's number of most probable classes (2).
    use_abs: compare ``|A_k|`` (the paper) or signed maps.
    chunk_size: base maps for this many classes at a time (bounds memory
      for ``'all'`` on many-class models).

  Returns:
    The VAR method; its maps have the base method's shape.

  Raises:
    ValueError: an empty or repeating class set, a class out of range, a
      target not in a given set, ``temperature <= 0``, ``tau`` outside
      ``[0, 1)``, ``top_n`` not in ``[1, num_classes)``. Class and target
      values are checked when concrete (outside ``jit``); under ``jit`` a
      target missing from its given set gives a zero map.

  References:
    Walter, Vreeken & Fischer, "Now you see me! Attribution distributions
    reveal what is truly important for a prediction", 2025.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxsal.attribution import gradient_x_input, var
    >>> left = jnp.zeros((8, 8)).at[:, :4].set(1.0).reshape(64)
    >>> w = jnp.stack([jnp.ones(64), 2 * left], axis=1)  # class 1 weighs the left half twice
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> maps = var(gradient_x_input, classes="all")(apply_fn, w, x, jnp.array([0, 1]))
    >>> maps[0, 0, :, 0].round(3).tolist()  # class 0 is damped where class 1 is stronger
    [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    >>> given = var(gradient_x_input, classes=jnp.array([0, 1]))  # the same, as a given set
    >>> bool(jnp.allclose(given(apply_fn, w, x, jnp.array([0, 1])), maps))
    True
  """
  _check_temperature(temperature)
  if tau is not None:
    _check_tau(tau)
  _checks.check_positive_int(top_n, "top_n")
  if chunk_size is not None:
    _checks.check_positive_int(chunk_size, "chunk_size")
  default_classes = classes
  if isinstance(classes, str):
    _checks.check_choice(classes, "classes", CLASS_SETS)

  def explain(apply_fn, params, x, target, *, key=None, classes=None, **kwargs):
    x, target = check_inputs(apply_fn, params, x, target)
    chosen = default_classes if classes is None else classes
    k, b = num_classes(apply_fn, params, x), x.shape[0]
    if isinstance(chosen, str):
      _checks.check_choice(chosen, "classes", CLASS_SETS)
      kind = chosen
      if chosen == "contrastive":
        slots, valid = contrastive_classes(apply_fn(params, x), target, top_n=top_n)
      else:
        slots = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[:, None], (k, b))
        valid = jnp.ones((k, b), bool)
    else:
      kind = "given"
      slots = check_classes(chosen, k, b).astype(jnp.int32)
      valid = jnp.ones(slots.shape, bool)
      if not isinstance(slots, jax.core.Tracer) and not isinstance(target, jax.core.Tracer):
        missing = ~(np.asarray(slots) == np.asarray(target)[None, :]).any(0)
        if missing.any():
          raise ValueError(
            f"each image's target must be in its class set; images "
            f"{np.flatnonzero(missing).tolist()[:10]} have targets "
            f"{np.asarray(target)[missing].tolist()[:10]} outside it"
          )
    if key is not None:
      kwargs["key"] = key
    with nested_calls():
      maps = class_maps(method, apply_fn, params, x, slots, kwargs, chunk_size=chunk_size)
    out = var_from_maps(
      maps,
      temperature=temperature,
      tau=DEFAULT_TAU[kind] if tau is None else tau,
      valid=valid,
      use_abs=use_abs,
    )
    is_t = (slots == target[None, :]) & valid
    maps = jnp.where(is_t.reshape(is_t.shape + (1,) * (out.ndim - 2)), out, 0).sum(0)
    return poison_invalid(maps, apply_fn, params, x, target)

  explain.__name__ = f"var({getattr(method, '__name__', 'method')})"
  explain.__doc__ = f"VAR over ``{getattr(method, '__name__', 'method')}``."
  return explain
