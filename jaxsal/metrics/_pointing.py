"""The grid pointing game (Böhle et al.'s protocol, as used by B-cos and VAR).

An n x n grid holds images of distinct classes, each classified correctly
with high confidence on its own. A map explaining the class of one cell
scores the share of its positive mass that lies in that cell: 1 is perfect
localisation, ``1 / n**2`` is what a uniform map gets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal import _checks


def smooth_maps(maps: jax.Array, kernel: int) -> jax.Array:
  """Average-pools ``[B, H, W]`` maps with a ``kernel x kernel`` window, stride 1, same size.

  Zero padding, divided by the full window (as PyTorch's ``avg_pool2d`` with
  ``padding=kernel // 2`` and ``count_include_pad=True``). ``kernel`` must be odd.
  """
  _checks.check_positive_int(kernel, "smooth")
  if kernel % 2 == 0:
    raise ValueError(f"smooth must be an odd window size (the map keeps its size); got {kernel}")
  pad = kernel // 2
  summed = jax.lax.reduce_window(
    maps, 0.0, jax.lax.add, (1, kernel, kernel), (1, 1, 1), ((0, 0), (pad, pad), (pad, pad))
  )
  return summed / (kernel * kernel)


def grid_pointing_game(maps: jax.Array, cell: jax.Array, *, n: int, smooth: int = 0) -> jax.Array:
  """The share of each map's positive mass that falls in its target's cell.

  Args:
    maps: ``[B, H, W]`` or ``[B, H, W, C]`` (summed over channels first), each
      map explaining the class of cell ``cell[b]`` of an n x n grid.
    cell: int ``[B]``, the target's cell, row-major in ``[0, n*n)``.
    n: cells per side; ``H`` and ``W`` must be multiples of ``n``.
    smooth: 0 (none) or an odd average-pooling window applied before
      clamping (the B-cos protocol's optional smoothing).

  Returns:
    float ``[B]`` in ``[0, 1]``: positive mass in the cell / positive mass in
    the grid; 0 for a map with no positive mass (it points nowhere).

  Raises:
    ValueError: bad shapes, ``n``, ``smooth``, or a cell out of range (when concrete).

  References:
    Böhle, Fritz & Schiele, "Convolutional Dynamic Alignment Networks for
    Interpretable Classifications", CVPR 2021; Walter, Vreeken & Fischer 2025.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxsal.metrics import grid_pointing_game
    >>> maps = jnp.zeros((2, 8, 8)).at[0, :4, :4].set(1.0).at[1].set(1.0)  # in cell 0; uniform
    >>> grid_pointing_game(maps, jnp.array([0, 3]), n=2).tolist()
    [1.0, 0.25]
  """
  _checks.check_positive_int(n, "n")
  if maps.ndim == 4:
    maps = maps.sum(-1)
  if maps.ndim != 3:
    raise ValueError(f"maps must be [B, H, W] or [B, H, W, C]; got shape {maps.shape}")
  b, h, w = maps.shape
  if h % n or w % n:
    raise ValueError(f"maps of size {h}x{w} do not split into a {n}x{n} grid of equal cells")
  cell = jnp.asarray(cell)
  if cell.shape != (b,) or not jnp.issubdtype(cell.dtype, jnp.integer):
    raise ValueError(
      f"cell must be an int array [B] = [{b}]; got shape {tuple(cell.shape)} and dtype {cell.dtype}"
    )
  if not isinstance(cell, jax.core.Tracer):
    bad = np.asarray(cell)[(np.asarray(cell) < 0) | (np.asarray(cell) >= n * n)]
    if bad.size:
      raise ValueError(f"cell must lie in [0, {n * n}) for a {n}x{n} grid; got {bad.tolist()[:5]}")
  if smooth:
    maps = smooth_maps(maps, smooth)
  pos = jnp.maximum(maps, 0.0)
  mass = pos.reshape(b, n, h // n, n, w // n).sum((2, 4)).reshape(b, n * n)
  total = mass.sum(1)
  inside = jnp.take_along_axis(mass, cell[:, None].astype(jnp.int32), 1)[:, 0]
  return jnp.where(total > 0, inside / jnp.where(total > 0, total, 1.0), 0.0)


def summarize_pointing(scores: Any, cells: Any, *, n: int) -> dict[str, Any]:
  """Mean and spread of pointing scores, pooled and per cell position.

  Args:
    scores: ``[M]`` scores from ``grid_pointing_game``.
    cells: int ``[M]``, the cell each score is for.
    n: cells per side.

  Returns:
    ``{'mean', 'std', 'sem', 'count', 'per_cell': [n*n means]}``; ``std`` is
    over maps, ``sem`` its standard error.
  """
  scores, cells = np.asarray(scores, np.float64), np.asarray(cells)
  if scores.shape != cells.shape or scores.ndim != 1 or scores.size == 0:
    raise ValueError(
      f"scores and cells must be non-empty [M] arrays of one shape; got "
      f"{scores.shape} and {cells.shape}"
    )
  per_cell = [
    float(scores[cells == c].mean()) if (cells == c).any() else float("nan") for c in range(n * n)
  ]
  std = float(scores.std(ddof=1)) if scores.size > 1 else 0.0
  return {
    "mean": float(scores.mean()),
    "std": std,
    "sem": std / np.sqrt(scores.size),
    "count": int(scores.size),
    "per_cell": per_cell,
  }


def confident_correct(
  apply_fn: Callable,
  params: Any,
  images: Any,
  labels: Any,
  *,
  min_confidence: float = 0.9,
  batch_size: int = 256,
) -> np.ndarray:
  """Which images the model classifies correctly with probability >= ``min_confidence``.

  The grid pointing game builds grids only from such images, so that each
  cell's class is really present for the model.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``.
    params: the model's parameters.
    images: ``[N, H, W, C]`` model inputs.
    labels: int ``[N]``.
    min_confidence: softmax probability threshold in ``[0, 1]``.
    batch_size: images per forward pass.

  Returns:
    bool ``[N]`` (numpy).
  """
  if not 0.0 <= min_confidence <= 1.0:
    raise ValueError(f"min_confidence must be in [0, 1]; got {min_confidence!r}")
  _checks.check_positive_int(batch_size, "batch_size")
  images, labels = np.asarray(images), np.asarray(labels)
  _checks.check_images(images, "images")
  if labels.shape != (images.shape[0],):
    raise ValueError(f"labels must be [N] = [{images.shape[0]}]; got {labels.shape}")
  keep = np.zeros(len(labels), bool)
  for s in range(0, len(labels), batch_size):
    prob = jax.nn.softmax(apply_fn(params, jnp.asarray(images[s : s + batch_size])), -1)
    prob = np.asarray(prob)
    lab = labels[s : s + batch_size]
    keep[s : s + batch_size] = (prob.argmax(1) == lab) & (
      prob[np.arange(len(lab)), lab] >= min_confidence
    )
  return keep
