"""RISE: randomised input sampling; every class's map from one set of masked inputs."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxsal._checks import check_choice, check_positive_int
from jaxsal.attribution._common import ApplyFn, check_inputs, poison_invalid

OUTPUTS = ("probabilities", "logits")


def rise_masks(
  key: jax.Array, indices: jax.Array, size: tuple[int, int], *, grid_size: int = 7, p: float = 0.5
) -> jax.Array:
  """The RISE masks with the given indices: ``[N, H, W]`` in ``[0, 1]``.

  Mask ``i`` is drawn with ``fold_in(key, i)``: an ``s x s`` grid of
  Bernoulli(``p``) cells, bilinearly upsampled to ``(s + 1)`` cells of
  ``ceil(H / s) x ceil(W / s)`` pixels, then cropped to ``H x W`` at a random
  offset within one cell. The same index always gives the same mask, so maps
  do not depend on how the masks are chunked.

  Args:
    key: a typed PRNG key.
    indices: int ``[N]``.
    size: ``(H, W)``.
    grid_size: ``s``.
    p: probability that a cell is kept.
  """
  h, w = size
  ch, cw = math.ceil(h / grid_size), math.ceil(w / grid_size)
  up = ((grid_size + 1) * ch, (grid_size + 1) * cw)

  def one(i):
    k_grid, k_y, k_x = jax.random.split(jax.random.fold_in(key, i), 3)
    grid = jax.random.bernoulli(k_grid, p, (grid_size, grid_size)).astype(jnp.float32)
    big = jax.image.resize(grid, up, method="bilinear", antialias=False)
    dy = jax.random.randint(k_y, (), 0, ch)
    dx = jax.random.randint(k_x, (), 0, cw)
    return jax.lax.dynamic_slice(big, (dy, dx), (h, w))

  return jax.vmap(one)(indices)


def _rise_core(
  apply_fn, params, x, classes, *, key, num_masks, grid_size, p, chunk_size, output, baseline
):
  """``[J, B, H, W]``: RISE maps of ``classes`` ``[J, B]``."""
  check_positive_int(num_masks, "num_masks")
  check_positive_int(grid_size, "grid_size")
  check_choice(output, "output", OUTPUTS)
  if not 0.0 < p <= 1.0:
    raise ValueError(f"p must lie in (0, 1]; got {p}")
  if key is None:
    raise ValueError("rise needs key=jax.random.key(seed) to draw its masks")
  chunk = min(num_masks if chunk_size is None else chunk_size, num_masks)
  check_positive_int(chunk, "chunk_size")
  b, h, w, c = x.shape
  n_chunks = -(-num_masks // chunk)
  ids = jnp.arange(n_chunks * chunk).reshape(n_chunks, chunk)
  picked_t = classes.T[None].astype(jnp.int32)  # [1, B, J]

  def body(total, idx):
    masks = rise_masks(key, idx, (h, w), grid_size=grid_size, p=p).astype(x.dtype)
    valid = (idx < num_masks).astype(x.dtype)
    m = masks[:, None, :, :, None]  # [n, 1, H, W, 1]
    masked = x[None] * m + baseline * (1 - m)  # [n, B, H, W, C]
    out = apply_fn(params, masked.reshape((chunk * b, h, w, c))).reshape(chunk, b, -1)
    if output == "probabilities":
      out = jax.nn.softmax(out, axis=-1)
    scores = jnp.take_along_axis(out, picked_t, axis=2) * valid[:, None, None]  # [n, B, J]
    return total + jnp.einsum("nbj,nhw->jbhw", scores, masks), None

  zeros = jnp.zeros((classes.shape[0], b, h, w), x.dtype)
  total, _ = jax.lax.scan(body, zeros, ids)
  return total / (num_masks * p)


def _baseline(x, baseline):
  b = jnp.asarray(baseline, x.dtype)
  if b.ndim != 0:
    raise ValueError(
      f"baseline must be a number (the value of masked-out pixels); got shape {tuple(b.shape)}"
    )
  return b


def rise(
  apply_fn: ApplyFn,
  params: Any,
  x: jax.Array,
  target: jax.Array,
  *,
  key: jax.Array | None = None,
  num_masks: int = 4000,
  grid_size: int = 7,
  p: float = 0.5,
  chunk_size: int | None = 100,
  output: str = "probabilities",
  baseline: float = 0.0,
) -> jax.Array:
  """RISE (Petsiuk, Das, Saenko 2018): the score-weighted average of random masks.

  ``S_t = sum_i f_t(x * M_i + b (1 - M_i)) M_i / (N p)`` over ``N`` random
  smooth masks (see ``rise_masks``); ``f_t`` is the softmax probability of
  class ``t`` (or its logit with ``output='logits'``). Every image of the
  batch sees the same masks. The masks run ``chunk_size`` at a time (a scan),
  so memory grows with ``chunk_size * B``, not ``num_masks``.

  One forward pass per mask gives every class's score, so
  ``all_classes(rise)`` and ``for_classes(rise, ...)`` reuse one set of
  forward passes for all classes instead of repeating them per class.

  Args:
    apply_fn, params, x, target: the attribution contract.
    key: a typed PRNG key (required): the masks.
    num_masks: ``N``.
    grid_size: ``s``, cells per side of the random grid.
    p: probability that a cell is kept.
    chunk_size: masks per forward pass; all at once if None.
    output: ``'probabilities'`` (the paper) or ``'logits'``.
    baseline: the value of masked-out pixels.

  Returns:
    ``[B, H, W, C]``, the same map in every channel.

  Raises:
    ValueError: no ``key``, ``num_masks``/``grid_size``/``chunk_size`` not
      positive, ``p`` outside (0, 1], bad ``x``/``target``.

  References:
    Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of
    Black-box Models", 2018.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.attribution import rise
    >>> left = jnp.zeros((8, 8)).at[:, :4].set(1.0).reshape(64)
    >>> w = jnp.stack([left, 1 - left], axis=1)  # class 0 sees the left half, class 1 the right
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> maps = rise(apply_fn, w, jnp.ones((1, 8, 8, 1)), jnp.array([0]), key=jax.random.key(0),
    ...             num_masks=200, grid_size=2, output="logits")
    >>> maps.shape, bool(maps[0, :, :4].mean() > maps[0, :, 4:].mean())
    ((1, 8, 8, 1), True)
  """
  x, target = check_inputs(apply_fn, params, x, target)
  maps = rise_for_classes(
    apply_fn,
    params,
    x,
    target[None],
    key=key,
    num_masks=num_masks,
    grid_size=grid_size,
    p=p,
    chunk_size=chunk_size,
    output=output,
    baseline=baseline,
  )[0]
  return poison_invalid(maps, apply_fn, params, x, target)


def rise_for_classes(
  apply_fn: ApplyFn,
  params: Any,
  x: jax.Array,
  classes: jax.Array,
  *,
  key: jax.Array | None = None,
  num_masks: int = 4000,
  grid_size: int = 7,
  p: float = 0.5,
  chunk_size: int | None = 100,
  output: str = "probabilities",
  baseline: float = 0.0,
) -> jax.Array:
  """RISE maps ``[K, B, H, W, C]`` of ``classes`` ``[K, B]`` from one set of forward passes.

  ``for_classes(rise, ...)`` and ``all_classes(rise)`` call this, after
  checking ``x`` and ``classes``; the hyperparameters are ``rise``'s.
  """
  maps = _rise_core(
    apply_fn,
    params,
    x,
    classes,
    key=key,
    num_masks=num_masks,
    grid_size=grid_size,
    p=p,
    chunk_size=chunk_size,
    output=output,
    baseline=_baseline(x, baseline),
  )
  return jnp.broadcast_to(maps[..., None], (classes.shape[0],) + x.shape)


# One set of forward passes serves every class: ``for_classes`` and
# ``all_classes`` call this with the [K, B] targets instead of vmapping rise.
rise.class_maps_hook = rise_for_classes
