"""Reducing and normalising maps for metrics and figures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal._checks import check_choice

REDUCTIONS = ("sum", "abs_sum", "max_abs", "max")


def reduce_channels(maps: jax.Array, how: str = "sum") -> jax.Array:
  """``[..., H, W, C] -> [..., H, W]``: ``sum``, ``abs_sum``, ``max`` or ``max_abs`` over C."""
  check_choice(how, "how", REDUCTIONS)
  if how == "sum":
    return maps.sum(-1)
  if how == "abs_sum":
    return jnp.abs(maps).sum(-1)
  if how == "max":
    return maps.max(-1)
  return jnp.abs(maps).max(-1)


def _per_image_percentile(a: jax.Array, q: float) -> jax.Array:
  flat = a.reshape(a.shape[0], -1)
  return jnp.percentile(flat, q, axis=1).reshape((-1,) + (1,) * (a.ndim - 1))


def normalize_percentile(maps: jax.Array, q: float = 99.0) -> jax.Array:
  """Each map ``[B, H, W]`` divided by its ``q``-th percentile of ``|a|``, clipped to [-1, 1]."""
  s = _per_image_percentile(jnp.abs(maps), q)
  return jnp.clip(maps / jnp.where(s > 0, s, 1.0), -1.0, 1.0)


def normalize_abs(maps: jax.Array, q: float = 99.0) -> jax.Array:
  """The sanity-check paper's "abs" visualisation of ``[B, H, W, C]`` maps, to [0, 1].

  ``a = sum_c |m|``, then ``(a - min) / (p_q - min)`` per image, clipped to [0, 1].

  References:
    Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.
  """
  a = jnp.abs(maps).sum(-1)
  lo = a.reshape(a.shape[0], -1).min(1).reshape(-1, 1, 1)
  hi = _per_image_percentile(a, q)
  span = jnp.where(hi - lo > 0, hi - lo, 1.0)
  return jnp.clip((a - lo) / span, 0.0, 1.0)


def normalize_diverging(maps: jax.Array, q: float = 99.0) -> jax.Array:
  """The sanity-check paper's "diverging" visualisation, to [-1, 1], signs kept.

  ``a = sum_c m``, divided by ``s``, the ``q``-th percentile of ``|a|`` per
  image, and clipped to [-1, 1]. (Mapping to [0, 1] for a colour map is
  ``(v + 1) / 2``.)
  """
  a = maps.sum(-1)
  s = _per_image_percentile(jnp.abs(a), q)
  return jnp.clip(a / jnp.where(s > 0, s, 1.0), -1.0, 1.0)


def keep_top(scores: jax.Array, fraction: jax.Array) -> jax.Array:
  """1 at each map's ``round(fraction * H * W)`` highest scores, 0 elsewhere: ``[B, H, W]``.

  How explanations are compared at the same area: every method keeps the
  same number of pixels. Ties are broken by position (the first pixel in
  row-major order wins), so exactly that many pixels are kept.

  Args:
    scores: ``[B, H, W]`` maps (reduce channels first).
    fraction: the kept share of pixels, a number or ``[B]``, in ``[0, 1]``.

  Raises:
    ValueError: ``scores`` not ``[B, H, W]``; ``fraction`` neither a number
      nor ``[B]``; a concrete ``fraction`` outside ``[0, 1]`` or NaN (under
      ``jit`` a fraction outside ``[0, 1]`` gives NaN masks for its images).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxsal.attribution import keep_top
    >>> keep_top(jnp.array([[[3.0, 1.0], [2.0, 0.0]]]), 0.5).tolist()
    [[[1.0, 0.0], [1.0, 0.0]]]
  """
  if jnp.ndim(scores) != 3:
    raise ValueError(
      f"scores must be maps of shape [B, H, W] (reduce the channels first, e.g. "
      f"reduce_channels(maps)); got shape {tuple(jnp.shape(scores))}"
    )
  b, h, w = scores.shape
  given = fraction
  fraction = jnp.asarray(fraction, jnp.float32)
  if fraction.ndim > 1 or (fraction.ndim == 1 and fraction.shape[0] != b):
    raise ValueError(
      f"fraction must be a number or one per map, shape [B] = [{b}]; "
      f"got shape {tuple(fraction.shape)}"
    )
  if not isinstance(fraction, jax.core.Tracer):
    f = np.asarray(given, np.float64)  # as given: the message shows 0.1, not float32's 0.1000...
    bad = f[~((f >= 0) & (f <= 1))]
    if bad.size:
      raise ValueError(f"fraction must lie in [0, 1]; got {bad.tolist()[:5]}")
  flat = scores.reshape(b, h * w)
  k = jnp.round(jnp.broadcast_to(jnp.asarray(fraction, jnp.float32), (b,)) * h * w)
  order = jnp.argsort(-flat, axis=1, stable=True)
  # The rank of each pixel: the inverse of the sorting permutation (a scatter,
  # not a second sort).
  rank = (
    jnp.zeros_like(order)
    .at[jnp.arange(b)[:, None], order]
    .set(jnp.broadcast_to(jnp.arange(h * w), (b, h * w)))
  )
  kept = (rank < k[:, None]).astype(scores.dtype).reshape(b, h, w)
  # Values unknown before the run: NaN masks, not a silent clamp.
  if isinstance(fraction, jax.core.Tracer) and jnp.issubdtype(kept.dtype, jnp.floating):
    ok = jnp.broadcast_to((fraction >= 0) & (fraction <= 1), (b,))
    kept = jnp.where(ok[:, None, None], kept, jnp.nan)
  return kept
