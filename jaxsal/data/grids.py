"""n x n image grids for the grid pointing game.

The grid pointing game (Böhle et al., 2021) evaluates an attribution map for
the class of one cell of a grid whose cells all hold different classes: a
good map puts its positive mass inside that cell. ``compose_grids`` builds
such grids from a labelled image set, with each cell's box and, optionally,
the digits' own boxes and masks carried into grid coordinates.

References:
  Böhle, Fritz, Schiele. Convolutional Dynamic Alignment Networks for
  Interpretable Classifications. CVPR 2021.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxsal import _checks


def cell_boxes(n: int, height: int, width: int) -> np.ndarray:
  """Returns the boxes of the cells of an n x n grid, row-major.

  Args:
    n: cells per side.
    height: height of one cell, in pixels.
    width: width of one cell, in pixels.

  Returns:
    int32 ``[n*n, 4]``: ``(y0, x0, y1, x1)`` end-exclusive; cell ``r*n + c``
    is ``(r*height, c*width, (r+1)*height, (c+1)*width)``.

  Example:
    >>> cell_boxes(2, 8, 8).tolist()
    [[0, 0, 8, 8], [0, 8, 8, 16], [8, 0, 16, 8], [8, 8, 16, 16]]
  """
  _checks.check_positive_int(n, "n")
  r, c = np.divmod(np.arange(n * n), n)
  return np.stack([r * height, c * width, (r + 1) * height, (c + 1) * width], axis=1).astype(
    np.int32
  )


def compose_grids(
  images: Any,
  labels: Any,
  *,
  n: int,
  num_grids: int,
  seed: int,
  boxes: Any = None,
  masks: Any = None,
) -> dict[str, np.ndarray]:
  """Composes ``num_grids`` n x n grids of images of distinct classes.

  For each grid, ``n*n`` distinct classes are drawn at random (in random
  order), and for each class one of its images; the images fill the cells
  row-major. Everything is a pure function of the inputs and ``seed``.

  Args:
    images: ``[N, H, W, C]``, any dtype (kept).
    labels: int ``[N]``.
    n: cells per side (``n >= 1``).
    num_grids: number of grids ``G`` (``>= 1``).
    seed: seeds the choice of classes and images.
    boxes: optional int ``[N, 4]`` ``(y0, x0, y1, x1)`` end-exclusive object
      boxes in image coordinates.
    masks: optional ``[N, H, W]`` object masks (nonzero = object).

  Returns:
    A dict with
      ``'image'``: ``[G, n*H, n*W, C]``, ``images``' dtype;
      ``'labels'``: int32 ``[G, n*n]``, the class of each cell, row-major,
      distinct within a grid;
      ``'indices'``: int64 ``[G, n*n]``, which input fills each cell;
      ``'cell_boxes'``: int32 ``[G, n*n, 4]``, each cell's box in grid
      coordinates (the same for every grid; the cells tile the grid);
      ``'boxes'`` (if ``boxes`` given): int32 ``[G, n*n, 4]``, each object's
      box shifted by its cell's offset into grid coordinates;
      ``'mask'`` (if ``masks`` given): int32 ``[G, n*H, n*W]``, ``k + 1`` on
      the object pixels of cell ``k`` (row-major) and 0 elsewhere, so
      ``mask == k + 1`` is cell ``k``'s object.

  Raises:
    ValueError: bad shapes, ``n``/``num_grids`` not positive, or fewer than
      ``n*n`` distinct classes in ``labels``.

  Example:
    >>> imgs = np.zeros((10, 8, 8, 1), np.float32)
    >>> grids = compose_grids(imgs, np.arange(10), n=2, num_grids=3, seed=0)
    >>> grids["image"].shape, grids["labels"].shape
    ((3, 16, 16, 1), (3, 4))
  """
  _checks.check_positive_int(n, "n")
  _checks.check_positive_int(num_grids, "num_grids")
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim != 4:
    raise ValueError(f"images must have shape [N, H, W, C]; got shape {images.shape}")
  num, h, w, c = images.shape
  if labels.shape != (num,):
    raise ValueError(f"labels must have shape [N]=[{num}] to match images; got {labels.shape}")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers; got dtype {labels.dtype}")
  if boxes is not None:
    boxes = np.asarray(boxes)
    if boxes.shape != (num, 4):
      raise ValueError(f"boxes must have shape [N, 4]=[{num}, 4]; got {boxes.shape}")
  if masks is not None:
    masks = np.asarray(masks)
    if masks.shape != (num, h, w):
      raise ValueError(f"masks must have shape [N, H, W]=[{num}, {h}, {w}]; got {masks.shape}")
  classes = np.unique(labels)
  cells = n * n
  if len(classes) < cells:
    raise ValueError(
      f"a {n}x{n} grid needs {cells} distinct classes; labels has only "
      f"{len(classes)}: {classes.tolist()}"
    )

  rng = np.random.default_rng(seed)
  members = [np.flatnonzero(labels == k) for k in classes]
  counts = np.array([len(m) for m in members])
  # Distinct classes per grid: the first n*n of a random permutation.
  chosen = np.argsort(rng.random((num_grids, len(classes))), axis=1)[:, :cells]
  picks = (rng.random((num_grids, cells)) * counts[chosen]).astype(np.int64)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  indices = np.concatenate(members)[starts[chosen] + picks]

  tiles = images[indices].reshape(num_grids, n, n, h, w, c)
  out = {
    "image": tiles.transpose(0, 1, 3, 2, 4, 5).reshape(num_grids, n * h, n * w, c),
    "labels": labels[indices].astype(np.int32),
    "indices": indices,
    "cell_boxes": np.broadcast_to(cell_boxes(n, h, w), (num_grids, cells, 4)).copy(),
  }
  if boxes is not None:
    offsets = out["cell_boxes"][:, :, [0, 1, 0, 1]]
    out["boxes"] = (boxes[indices].astype(np.int32) + offsets).astype(np.int32)
  if masks is not None:
    ids = (masks[indices] != 0) * np.arange(1, cells + 1, dtype=np.int32)[None, :, None, None]
    out["mask"] = (
      ids.reshape(num_grids, n, n, h, w)
      .transpose(0, 1, 3, 2, 4)
      .reshape(num_grids, n * h, n * w)
      .astype(np.int32)
    )
  return out
