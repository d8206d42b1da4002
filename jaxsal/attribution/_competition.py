"""Competition for pixels (Gupta & Arora 2019) over any attribution method; CGI.

Every class's map is computed (one compiled call, vmapped over classes); a
class *wins* a pixel when its score there is positive and the largest of all
classes', or negative and the smallest. The competitive map of the target
keeps the target's attribution where it wins and is zero elsewhere, with
both signs kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxsal import _checks
from jaxsal.attribution._classes import class_maps
from jaxsal.attribution._common import check_inputs, nested_calls, num_classes, poison_invalid
from jaxsal.attribution._gradient import gradient_x_input

PER = ("pixel", "element")


def _scores(maps: jax.Array, per: str) -> jax.Array:
  # Per pixel: the channel sum (completeness holds for it); kept as a size-1
  # channel axis so it broadcasts back over the channels of the maps.
  return maps.sum(-1, keepdims=True) if per == "pixel" else maps


def _wins(s: jax.Array, hi: jax.Array, lo: jax.Array) -> jax.Array:
  # ``>=`` against a max that includes the class itself: a strict ``>`` would
  # never hold (the max is at least the class's own score) and give zero maps.
  return ((s > 0) & (s >= hi)) | ((s < 0) & (s <= lo))


def competition_from_maps(maps: jax.Array, *, per: str = "pixel") -> jax.Array:
  """Every class's competitive map from every class's map.

  Args:
    maps: ``[K, B, H, W, C]``, the maps of all ``K`` classes (for example from
      ``all_classes(method)``). Scores are compared across the leading axis,
      so every class that can win must be in it.
    per: ``'pixel'`` (scores summed over channels, as the paper does; a class
      wins all channels of a pixel or none) or ``'element'`` (each channel
      competes on its own).

  Returns:
    ``[K, B, H, W, C]``: class ``k``'s map where ``k`` wins, 0 elsewhere. With
    ``per='pixel'`` the channel sum of class ``k``'s output is the paper's
    ``CGI_k``. Ties (two classes with the same largest positive score) let
    both win; a zero score wins nothing.

  Raises:
    ValueError: ``per`` unknown or ``maps`` not ``[K, B, H, W, C]``.

  References:
    Gupta & Arora, "A Simple Saliency Method That Passes the Sanity Checks", 2019.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxsal.attribution import all_classes, competition_from_maps, gradient_x_input
    >>> left = jnp.zeros((8, 8)).at[:, :4].set(1.0).reshape(64)
    >>> w = jnp.stack([jnp.ones(64), 2 * left], axis=1)  # class 1 weighs the left half twice
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> comp = competition_from_maps(all_classes(gradient_x_input)(apply_fn, w, x))
    >>> comp.shape, comp.sum((2, 3, 4)).tolist()  # class 0 keeps the right half only
    ((2, 2, 8, 8, 1), [[32.0, 32.0], [64.0, 64.0]])
  """
  _checks.check_choice(per, "per", PER)
  if maps.ndim != 5:
    raise ValueError(f"maps must be [K, B, H, W, C] (every class's maps); got shape {maps.shape}")
  s = _scores(maps, per)
  wins = _wins(s, s.max(0, keepdims=True), s.min(0, keepdims=True))
  return jnp.where(wins, maps, jnp.zeros_like(maps))


def _for_classes(method: Callable, per: str, chunk_size: int | None) -> Callable:
  """The competitive maps of targets ``[K', B]`` from one set of every class's maps.

  ``for_classes`` / ``all_classes`` of a competitive method call this instead
  of running one competition per target: ``K`` maps of ``method`` (``chunk_size``
  classes at a time), competed once (``competition_from_maps``), then the
  targets' rows. That is ``K`` base maps where vmapping the competition over
  ``K'`` targets would compute ``K * K'``; it holds all ``K`` maps at once.
  """

  def hook(apply_fn, params, x, targets, *, key=None, **kwargs):
    if key is not None:
      kwargs["key"] = key
    k, b = num_classes(apply_fn, params, x), x.shape[0]
    every = class_maps(
      method,
      apply_fn,
      params,
      x,
      jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[:, None], (k, b)),
      kwargs,
      chunk_size=chunk_size,
    )
    return competition_from_maps(every, per=per)[targets, jnp.arange(b)[None, :]]

  return hook


def competition(method: Callable, *, per: str = "pixel", chunk_size: int | None = None) -> Callable:
  """Competition for pixels over ``method``: the target keeps only the pixels it wins.

  The returned function has the attribution contract
  ``fn(apply_fn, params, x, target, *, key=None, **hparams) -> [B, H, W, C]``
  (``hparams`` go to ``method``). It computes every class's map in one
  compiled call. With ``chunk_size``, classes are taken ``chunk_size`` at a
  time in a ``lax.scan`` that keeps only running maxima, minima and the
  target's map, so memory is bounded by ``chunk_size`` classes whatever the
  number of classes (for 1000-class models).

  The paper applies competition to gradient x input (``cgi``); it applies to
  any method whose scores are comparable across classes, best to methods with
  completeness (scores summing to the logit: IG, gradient x input).

  Args:
    method: an attribution method.
    per: ``'pixel'`` (default, the paper) or ``'element'``; see
      ``competition_from_maps``.
    chunk_size: classes per step of the scan; None: all at once.

  Returns:
    The competitive method.

  Raises:
    ValueError: ``per`` unknown or ``chunk_size`` not a positive int (here);
      bad ``x`` / ``target`` when called.

  References:
    Gupta & Arora, "A Simple Saliency Method That Passes the Sanity Checks", 2019.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxsal.attribution import competition, integrated_gradients
    >>> left = jnp.zeros((8, 8)).at[:, :4].set(1.0).reshape(64)
    >>> w = jnp.stack([jnp.ones(64), 2 * left], axis=1)  # class 1 weighs the left half twice
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> maps = competition(integrated_gradients)(apply_fn, w, x, jnp.array([0, 1]), steps=4)
    >>> maps.sum((1, 2, 3)).round(3).tolist()  # class 0 loses the left half to class 1
    [32.0, 64.0]
  """
  _checks.check_choice(per, "per", PER)
  if chunk_size is not None:
    _checks.check_positive_int(chunk_size, "chunk_size")

  def explain(apply_fn, params, x, target, *, key=None, **kwargs):
    x, target = check_inputs(apply_fn, params, x, target)
    k = num_classes(apply_fn, params, x)
    b = x.shape[0]
    if key is not None:
      kwargs["key"] = key
    size = k if chunk_size is None else min(int(chunk_size), k)
    steps = -(-k // size)
    # Pad the class list to whole chunks; padded entries neither compete nor
    # count as the target.
    classes = jnp.arange(steps * size, dtype=jnp.int32).reshape(steps, size)
    valid = classes < k
    classes = jnp.where(valid, classes, 0)

    def step(carry, chunk):
      hi, lo, mine = carry
      cs, ok = chunk
      maps = class_maps(
        method, apply_fn, params, x, jnp.broadcast_to(cs[:, None], (size, b)), kwargs
      )
      s = _scores(maps, per)
      okb = ok.reshape((size,) + (1,) * (s.ndim - 1))
      hi = jnp.maximum(hi, jnp.where(okb, s, -jnp.inf).max(0))
      lo = jnp.minimum(lo, jnp.where(okb, s, jnp.inf).min(0))
      is_t = (cs[:, None] == target[None, :]) & ok[:, None]
      mine = mine + jnp.where(is_t.reshape((size, b) + (1,) * (maps.ndim - 2)), maps, 0).sum(0)
      return (hi, lo, mine), None

    with nested_calls():
      shape = jax.eval_shape(
        lambda: class_maps(method, apply_fn, params, x, jnp.zeros((1, b), jnp.int32), kwargs)
      )
      map_shape, dtype = shape.shape[1:], shape.dtype
      s_shape = map_shape[:-1] + (1,) if per == "pixel" else map_shape
      init = (
        jnp.full(s_shape, -jnp.inf, dtype),
        jnp.full(s_shape, jnp.inf, dtype),
        jnp.zeros(map_shape, dtype),
      )
      if steps == 1:
        (hi, lo, mine), _ = step(init, (classes[0], valid[0]))
      else:
        (hi, lo, mine), _ = jax.lax.scan(step, init, (classes, valid))
    maps = jnp.where(_wins(_scores(mine, per), hi, lo), mine, jnp.zeros_like(mine))
    return poison_invalid(maps, apply_fn, params, x, target)

  explain.class_maps_hook = _for_classes(method, per, chunk_size)
  explain.__name__ = f"competition({getattr(method, '__name__', 'method')})"
  explain.__doc__ = f"Competition for pixels over ``{getattr(method, '__name__', 'method')}``."
  return explain


def cgi(
  apply_fn,
  params: Any,
  x: jax.Array,
  target: jax.Array,
  *,
  key: jax.Array | None = None,
  per: str = "pixel",
  chunk_size: int | None = None,
) -> jax.Array:
  """Competitive gradient x input (CGI): ``competition(gradient_x_input)``.

  ``CGI_y(u) = sum_c x * dz_y/dx`` at pixels ``u`` that ``y`` wins (its score
  positive and the largest of all classes', or negative and the smallest),
  else 0.

  Args:
    apply_fn, params, x, target: as for every method (``x`` ``[B, H, W, C]``,
      ``target`` int ``[B]``).
    key: unused.
    per: ``'pixel'`` (the paper) or ``'element'``.
    chunk_size: classes at a time, bounding memory for many-class models.

  Returns:
    ``[B, H, W, C]``: gradient x input of the target where it wins, 0 elsewhere.

  References:
    Gupta & Arora, "A Simple Saliency Method That Passes the Sanity Checks", 2019.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxsal.attribution import cgi
    >>> left = jnp.zeros((8, 8)).at[:, :4].set(1.0).reshape(64)
    >>> w = jnp.stack([jnp.ones(64), 2 * left], axis=1)  # class 1 weighs the left half twice
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> maps = cgi(apply_fn, w, x, jnp.array([0, 1]))
    >>> maps[0, 0, :, 0].tolist()  # class 0 wins only the right half of a row
    [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    >>> maps.sum((1, 2, 3)).tolist()
    [32.0, 64.0]
  """
  del key
  return competition(gradient_x_input, per=per, chunk_size=chunk_size)(apply_fn, params, x, target)


def _cgi_for_classes(
  apply_fn, params, x, targets, *, key=None, per: str = "pixel", chunk_size: int | None = None
):
  _checks.check_choice(per, "per", PER)
  return _for_classes(gradient_x_input, per, chunk_size)(apply_fn, params, x, targets)


cgi.class_maps_hook = _cgi_for_classes
