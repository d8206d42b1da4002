"""Similarity of saliency maps, as the sanity-check paper measures it, batched in JAX.

* ``spearman``: rank correlation, ties given their average rank (as
  ``scipy.stats.spearmanr``).
* ``ssim``: structural similarity with Gaussian weights (as
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=...)``).
* ``hog``: histogram of oriented gradients (as ``skimage.feature.hog`` with
  9 orientations and L2-Hys blocks); ``hog_similarity`` compares two maps'
  descriptors by rank correlation.
* ``similarity``: all four of the paper's numbers for two batches of maps,
  with its normalisations.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxsal import _checks
from jaxsal.attribution import normalize_abs, normalize_diverging


def _same_shape(a: jax.Array, b: jax.Array, what: str) -> None:
  if a.shape != b.shape:
    raise ValueError(
      f"{what}: the two batches of maps must have the same shape; got "
      f"{tuple(a.shape)} and {tuple(b.shape)}"
    )


def _ranks(v: jax.Array) -> jax.Array:
  """Average ranks (1-based) along the last axis."""
  s = jnp.sort(v, axis=-1)
  lo = jax.vmap(lambda s_, v_: jnp.searchsorted(s_, v_, side="left"))(
    s.reshape(-1, s.shape[-1]), v.reshape(-1, v.shape[-1])
  )
  hi = jax.vmap(lambda s_, v_: jnp.searchsorted(s_, v_, side="right"))(
    s.reshape(-1, s.shape[-1]), v.reshape(-1, v.shape[-1])
  )
  return ((lo + hi + 1) / 2.0).reshape(v.shape)


def _pearson(a: jax.Array, b: jax.Array) -> jax.Array:
  a = a - a.mean(-1, keepdims=True)
  b = b - b.mean(-1, keepdims=True)
  den = jnp.sqrt((a * a).sum(-1) * (b * b).sum(-1))
  return (a * b).sum(-1) / den


def spearman(a: jax.Array, b: jax.Array) -> jax.Array:
  """Spearman rank correlation of each pair of maps: ``[B, ...]`` x ``[B, ...]`` -> ``[B]``.

  Ties get the average of their ranks, as ``scipy.stats.spearmanr``; a
  constant map gives NaN, as there.
  """
  _same_shape(a, b, "spearman")
  a, b = jnp.asarray(a), jnp.asarray(b)
  flat = lambda m: m.reshape(m.shape[0], -1).astype(jnp.float32)
  return _pearson(_ranks(flat(a)), _ranks(flat(b)))


def _gaussian_weights(sigma: float, truncate: float) -> jax.Array:
  radius = int(truncate * sigma + 0.5)
  x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  w = jnp.exp(-0.5 * (x / sigma) ** 2)
  return w / w.sum()


def _gaussian_filter(m: jax.Array, sigma: float, truncate: float) -> jax.Array:
  """``scipy.ndimage.gaussian_filter(mode='reflect')`` of ``[B, H, W]`` maps, separably."""
  w = _gaussian_weights(sigma, truncate)
  r = (w.shape[0] - 1) // 2
  # scipy's 'reflect' repeats the edge pixel: numpy's 'symmetric'.
  p = jnp.pad(m, ((0, 0), (r, r), (r, r)), mode="symmetric")
  h, wd = m.shape[1:]
  rows = sum(w[i] * p[:, i : i + h, :] for i in range(w.shape[0]))
  return sum(w[i] * rows[:, :, i : i + wd] for i in range(w.shape[0]))


def ssim(
  a: jax.Array,
  b: jax.Array,
  *,
  data_range: float = 1.0,
  sigma: float = 1.5,
  k1: float = 0.01,
  k2: float = 0.03,
) -> jax.Array:
  """Structural similarity of ``[B, H, W]`` maps with Gaussian weights: ``[B]``.

  Population covariances, an 11-tap window for ``sigma = 1.5`` (truncated
  at 3.5 sigma), edges of the window's radius left out of the mean: the
  settings of ``skimage.metrics.structural_similarity`` with
  ``gaussian_weights=True, use_sample_covariance=False``.

  References:
    Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error
    visibility to structural similarity", IEEE TIP 2004.
  """
  _same_shape(a, b, "ssim")
  if a.ndim != 3:
    raise ValueError(f"ssim takes maps [B, H, W]; got shape {tuple(a.shape)}")
  truncate = 3.5
  win = 2 * int(truncate * sigma + 0.5) + 1
  if min(a.shape[1:]) < win:
    raise ValueError(
      f"ssim: maps of {a.shape[1]}x{a.shape[2]} are smaller than the "
      f"{win}x{win} window of sigma={sigma}"
    )
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  f = lambda m: _gaussian_filter(m, sigma, truncate)
  ux, uy = f(a), f(b)
  vx = f(a * a) - ux * ux
  vy = f(b * b) - uy * uy
  vxy = f(a * b) - ux * uy
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
  pad = (win - 1) // 2
  return s[:, pad : s.shape[1] - pad, pad : s.shape[2] - pad].mean((1, 2))


def hog(
  m: jax.Array, *, orientations: int = 9, pixels_per_cell: int = 16, cells_per_block: int = 3
) -> jax.Array:
  """HOG descriptors of ``[B, H, W]`` maps: ``[B, D]``, as ``skimage.feature.hog``.

  Central-difference gradients (zero on the border rows and columns),
  unsigned orientations in ``[0, 180)`` split into ``orientations`` bins,
  each cell's histogram the sum of gradient magnitudes per bin over the
  cell's pixels divided by its area, L2-Hys normalised blocks of
  ``cells_per_block`` cells sliding by one cell, flattened.

  References:
    Dalal & Triggs, "Histograms of Oriented Gradients for Human Detection", CVPR 2005.
  """
  for v, name in (
    (orientations, "orientations"),
    (pixels_per_cell, "pixels_per_cell"),
    (cells_per_block, "cells_per_block"),
  ):
    _checks.check_positive_int(v, name)
  if m.ndim != 3:
    raise ValueError(f"hog takes maps [B, H, W]; got shape {tuple(m.shape)}")
  bsz, h, w = m.shape
  nr, nc = h // pixels_per_cell, w // pixels_per_cell
  if nr < cells_per_block or nc < cells_per_block:
    side = cells_per_block * pixels_per_cell
    raise ValueError(
      f"hog: maps of {h}x{w} are too small for blocks of {cells_per_block} cells "
      f"of {pixels_per_cell} pixels (at least {side}x{side})"
    )
  m = jnp.asarray(m, jnp.float32)
  g_row = jnp.zeros_like(m).at[:, 1:-1, :].set(m[:, 2:, :] - m[:, :-2, :])
  g_col = jnp.zeros_like(m).at[:, :, 1:-1].set(m[:, :, 2:] - m[:, :, :-2])
  mag = jnp.hypot(g_col, g_row)
  # Bins by exact sign tests on the gradient vector rather than by its angle in
  # degrees: float32 angles of nearly horizontal gradients round to 180 and
  # wrap into bin 0, where skimage's float64 angles stay in the last bin.
  # Orientations are unsigned: fold the vector into the upper half plane.
  flip = (g_row < 0) | ((g_row == 0) & (g_col < 0))
  u, v = jnp.where(flip, -g_col, g_col), jnp.where(flip, -g_row, g_row)
  width = jnp.pi / orientations
  edges = width * jnp.arange(1, orientations, dtype=jnp.float32)  # inner edges
  past = (jnp.cos(edges) * v[..., None] - jnp.sin(edges) * u[..., None]) >= 0
  index = past.sum(-1)  # bin i holds angles in [i, i + 1) * width
  inbin = index[..., None] == jnp.arange(orientations)
  votes = jnp.where(inbin, mag[..., None], 0.0)[:, : nr * pixels_per_cell, : nc * pixels_per_cell]
  cells = votes.reshape(bsz, nr, pixels_per_cell, nc, pixels_per_cell, orientations).sum((2, 4))
  cells = cells / (pixels_per_cell * pixels_per_cell)
  k = cells_per_block
  br, bc = nr - k + 1, nc - k + 1
  blocks = jnp.stack(
    [jnp.stack([cells[:, r : r + k, c : c + k] for c in range(bc)], 1) for r in range(br)], 1
  )  # [B, br, bc, k, k, O]
  eps = 1e-5
  norm = lambda v: v / jnp.sqrt((v * v).sum((3, 4, 5), keepdims=True) + eps**2)
  blocks = norm(jnp.minimum(norm(blocks), 0.2))
  return blocks.reshape(bsz, -1)


def hog_similarity(a: jax.Array, b: jax.Array, **hog_kwargs) -> jax.Array:
  """Rank correlation of the HOG descriptors of two batches of ``[B, H, W]`` maps: ``[B]``."""
  _same_shape(a, b, "hog_similarity")
  return spearman(hog(a, **hog_kwargs), hog(b, **hog_kwargs))


def _minmax(m: jax.Array) -> jax.Array:
  flat = m.reshape(m.shape[0], -1)
  lo, hi = flat.min(1), flat.max(1)
  span = jnp.where(hi > lo, hi - lo, 1.0)
  return (m - lo[:, None, None]) / span[:, None, None]


# The four numbers ``similarity`` returns, in the paper's order.
MEASURES = ("spearman_abs", "spearman_diverging", "ssim", "hog")


def similarity(
  a: jax.Array, b: jax.Array, *, percentile: float = 99.0, pixels_per_cell: int = 16
) -> dict[str, jax.Array]:
  """The sanity-check paper's similarity numbers for two batches of maps ``[B, H, W, C]``.

  Args:
    a, b: maps of one shape, e.g. the trained and a randomised model's.
    percentile: the clipping percentile of the normalisations (99).
    pixels_per_cell: HOG cell size (16).

  Returns:
    ``{'spearman_abs', 'spearman_diverging', 'ssim', 'hog'}``, each ``[B]``:
    Spearman correlation of the "abs" and of the "diverging" visualisations
    (``normalize_abs``, ``normalize_diverging``), SSIM of the abs maps
    min-max scaled to [0, 1], and the HOG similarity of those scaled maps.

  Raises:
    ValueError: maps of different shapes, or not ``[B, H, W, C]``.

  References:
    Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.

  Example:
    >>> import jax
    >>> from jaxsal.sanity import similarity
    >>> a = jax.random.normal(jax.random.key(0), (2, 16, 16, 1))
    >>> b = jax.random.normal(jax.random.key(1), (2, 16, 16, 1))
    >>> same = similarity(a, a, pixels_per_cell=4)
    >>> {k: v.round(3).tolist() for k, v in same.items()}
    {'spearman_abs': [1.0, 1.0], 'spearman_diverging': [1.0, 1.0], 'ssim': [1.0, 1.0], 'hog': [1.0, 1.0]}
    >>> bool((similarity(a, b, pixels_per_cell=4)["spearman_abs"] < 0.5).all())  # unrelated maps
    True
  """
  _same_shape(a, b, "similarity")
  if a.ndim != 4:
    raise ValueError(f"similarity takes maps [B, H, W, C]; got shape {tuple(a.shape)}")
  if not 0.0 < percentile <= 100.0 or math.isnan(percentile):
    raise ValueError(f"percentile must be in (0, 100]; got {percentile}")
  abs_a, abs_b = normalize_abs(a, percentile), normalize_abs(b, percentile)
  mm_a, mm_b = _minmax(jnp.abs(a).sum(-1)), _minmax(jnp.abs(b).sum(-1))
  return {
    "spearman_abs": spearman(abs_a, abs_b),
    "spearman_diverging": spearman(
      normalize_diverging(a, percentile), normalize_diverging(b, percentile)
    ),
    "ssim": ssim(mm_a, mm_b),
    "hog": hog_similarity(mm_a, mm_b, pixels_per_cell=pixels_per_cell),
  }
