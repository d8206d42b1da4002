"""Renders cluttered-digit examples from scikit-learn's handwritten digits.

A cluttered digit is a real 8x8 handwritten digit (``sklearn.datasets.load_digits``,
values 0..16), upscaled and placed at a random position on a larger canvas,
over a smooth random background, with a few fragments cropped from *other*
digits scattered around it and a little pixel noise. The digit is always the
brightest and largest object: fragments are dimmer (30-55% of the digit's
peak), cut from a quarter to 0.39 of a source digit, and placed so that they
overlap the digit's box by at most 10% of their own area (clutter, not
occlusion). A small CNN reads the digit reliably, while a localisation method
still has to ignore the distractors.

Rendering is vectorised over a batch of examples (per-example Python work is
a few slice assignments), and deterministic given the ``np.random.Generator``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

# Source digits are 8x8 with integer intensities in 0..16.
SOURCE_SIZE = 8
SOURCE_MAX = 16.0
# Ground truth: strokes are where the upscaled digit exceeds this fraction of full ink.
MASK_THRESHOLD = 0.4
# Digit side, in pixels, on a 64-pixel canvas; other canvases scale it.
_DIGIT_SIZE_64 = (20, 36)
# Fragments are crops of 4 or 5 source pixels a side (1/4 to 0.39 of a
# digit's area); at most _MAX_CLUTTER_OVERLAP of a fragment's box may overlap
# the digit's box, if one of _PLACEMENT_TRIES random positions allows it.
_CROP_SIDES = (4, 5)
_CROP_TRIES = 8
_MIN_CROP_INK = 0.5 * SOURCE_MAX  # A crop should hold some stroke, not just margin.
_MAX_CLUTTER_OVERLAP = 0.1
_PLACEMENT_TRIES = 25
# Intensities in 0..255: digit peak, fragment peak relative to the digit,
# background texture amplitude, pixel noise standard deviation.
_DIGIT_PEAK = (190.0, 255.0)
_CLUTTER_RELATIVE_PEAK = (0.3, 0.55)
_BACKGROUND_AMPLITUDE = (10.0, 50.0)
_BACKGROUND_GRID = 5
_NOISE_STD = 6.0


class RenderedDigits(NamedTuple):
  """Rendered examples (with a leading batch axis ``B`` when batched).

  Attributes:
    image: uint8 ``[B, S, S, 1]``, the cluttered canvases.
    mask: uint8 ``[B, S, S]``, 1 on the digit's strokes (computed before clutter).
    box: int32 ``[B, 4]``, ``(y0, x0, y1, x1)``, the tight bounding box of
      ``mask``, end-exclusive (``y1 - y0`` is the height).
  """

  image: np.ndarray
  mask: np.ndarray
  box: np.ndarray


def digit_size_range(canvas_size: int) -> tuple[int, int]:
  """Returns the inclusive range of the digit's side for a canvas size.

  Args:
    canvas_size: side of the square canvas, in pixels.

  Returns:
    ``(low, high)``: 20..36 on a 64-pixel canvas, scaled proportionally
    (never below 8, the source resolution, nor above the canvas).

  Example:
    >>> digit_size_range(32)
    (10, 18)
  """
  low = min(canvas_size, max(SOURCE_SIZE, int(round(canvas_size * _DIGIT_SIZE_64[0] / 64))))
  high = min(canvas_size, max(low, int(round(canvas_size * _DIGIT_SIZE_64[1] / 64))))
  return low, high


def tight_boxes(masks: np.ndarray) -> np.ndarray:
  """Returns the tight bounding box of the nonzero pixels of each mask.

  Args:
    masks: ``[..., H, W]``, any dtype; nonzero marks the object.

  Returns:
    int32 ``[..., 4]``: ``(y0, x0, y1, x1)``, end-exclusive.

  Raises:
    ValueError: if ``masks`` has fewer than 2 dimensions or a mask is empty.

  Example:
    >>> m = np.zeros((5, 5)); m[1:3, 2:5] = 1
    >>> tight_boxes(m).tolist()
    [1, 2, 3, 5]
  """
  masks = np.asarray(masks)
  if masks.ndim < 2:
    raise ValueError(f"masks must have shape [..., H, W]; got shape {masks.shape}")
  rows = masks.any(axis=-1)
  cols = masks.any(axis=-2)
  if not rows.any(axis=-1).all():
    raise ValueError("a mask has no nonzero pixel, so it has no bounding box")
  h, w = masks.shape[-2:]
  return np.stack(
    [
      rows.argmax(-1),
      cols.argmax(-1),
      h - rows[..., ::-1].argmax(-1),
      w - cols[..., ::-1].argmax(-1),
    ],
    axis=-1,
  ).astype(np.int32)


@functools.cache
def _cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
  """``[n_out, n_in]`` bicubic (Keys, a=-0.5) resampling weights, edge-clamped.

  Pixel centres align as in image resizing (``(i + 0.5) * n_in / n_out - 0.5``).
  Resizing a stack of 2-D patches is then two small matrix products, far
  cheaper than a general interpolation routine on 8x8 inputs.
  """
  centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
  base = np.floor(centres).astype(np.int64)
  weights = np.zeros((n_out, n_in), np.float64)
  for offset in range(-1, 3):
    t = np.abs(centres - (base + offset))
    w = np.where(
      t <= 1, (1.5 * t - 2.5) * t * t + 1, np.where(t < 2, ((-0.5 * t + 2.5) * t - 4) * t + 2, 0.0)
    )
    np.add.at(weights, (np.arange(n_out), np.clip(base + offset, 0, n_in - 1)), w)
  return weights.astype(np.float32)


def _resize(patches: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Bicubic resize of ``[N, h, w]`` patches to ``[N, *shape]`` (may overshoot)."""
  rows = _cubic_matrix(patches.shape[-2], shape[0])
  cols = _cubic_matrix(patches.shape[-1], shape[1])
  return rows @ patches.astype(np.float32) @ cols.T


def _upscale_ink(patches: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Upscaled source patches as a fraction of full ink, in [0, 1]."""
  return np.clip(_resize(patches, shape) * (1.0 / SOURCE_MAX), 0.0, 1.0)


def _crop_windows(rng: np.random.Generator, sources: np.ndarray):
  """Picks a crop per source: the first of a few random windows with some ink.

  Returns ``(h, w, y, x)`` int arrays ``[F]``; if no try reaches
  ``_MIN_CROP_INK``, the inkiest try is used.
  """
  f = len(sources)
  lo, hi = _CROP_SIDES
  hs = rng.integers(lo, hi + 1, size=(f, _CROP_TRIES))
  ws = rng.integers(lo, hi + 1, size=(f, _CROP_TRIES))
  ys = rng.integers(0, SOURCE_SIZE - hs + 1)
  xs = rng.integers(0, SOURCE_SIZE - ws + 1)
  ink = np.zeros((f, _CROP_TRIES), np.float32)
  rows = np.arange(f)[:, None]
  for h in range(lo, hi + 1):
    # Running maxima, separably: over h rows, then over w columns.
    row_max = sources[:, : SOURCE_SIZE - h + 1]
    for dy in range(1, h):
      row_max = np.maximum(row_max, sources[:, dy : SOURCE_SIZE - h + 1 + dy])
    for w in range(lo, hi + 1):
      window_max = row_max[:, :, : SOURCE_SIZE - w + 1]  # [F, 8-h+1, 8-w+1]
      for dx in range(1, w):
        window_max = np.maximum(window_max, row_max[:, :, dx : SOURCE_SIZE - w + 1 + dx])
      sel = (hs == h) & (ws == w)
      ink[sel] = window_max[np.broadcast_to(rows, sel.shape)[sel], ys[sel], xs[sel]]
  enough = ink >= _MIN_CROP_INK
  pick = np.where(enough.any(1), enough.argmax(1), ink.argmax(1))
  take = lambda a: a[np.arange(f), pick]
  return take(hs), take(ws), take(ys), take(xs)


def _place(
  rng: np.random.Generator, fh: np.ndarray, fw: np.ndarray, canvas_size: int, boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """Top-left corners for fragments ``[F]`` avoiding their digit's ``boxes [F, 4]``.

  Each fragment takes the first of ``_PLACEMENT_TRIES`` random positions that
  overlaps its box by at most ``_MAX_CLUTTER_OVERLAP`` of its own area, else
  the least overlapping one.
  """
  shape = (_PLACEMENT_TRIES, len(fh))
  ys = rng.integers(0, canvas_size - fh + 1, size=shape).T
  xs = rng.integers(0, canvas_size - fw + 1, size=shape).T
  dy = np.minimum(ys + fh[:, None], boxes[:, 2:3]) - np.maximum(ys, boxes[:, 0:1])
  dx = np.minimum(xs + fw[:, None], boxes[:, 3:4]) - np.maximum(xs, boxes[:, 1:2])
  overlap = np.maximum(dy, 0) * np.maximum(dx, 0)
  ok = overlap <= _MAX_CLUTTER_OVERLAP * (fh * fw)[:, None]
  pick = np.where(ok.any(1), ok.argmax(1), overlap.argmin(1))
  idx = np.arange(len(fh))
  return ys[idx, pick], xs[idx, pick]


def render_cluttered_digits(
  rng: np.random.Generator,
  digits: np.ndarray,
  clutter_digits: np.ndarray,
  *,
  num_clutter: np.ndarray | None = None,
  canvas_size: int = 64,
) -> RenderedDigits:
  """Renders a batch of digits, each on its own cluttered canvas.

  Each digit is upscaled (bicubic) to a random side in
  ``digit_size_range(canvas_size)`` and placed fully inside the canvas; its
  mask is where the upscaled ink exceeds ``MASK_THRESHOLD`` of full ink,
  before any clutter (if no pixel does, its brightest pixels, at least half
  its maximum). Each used entry of ``clutter_digits`` adds one fragment: a
  random crop of 4-5 source pixels a side with some ink, upscaled by its own
  random digit scale, drawn at 30-55% of the digit's peak, at a random
  position overlapping the digit's box by at most 10% of the fragment's area
  (the least overlapping of 25 tries if none does). Below everything lies a
  smooth random texture (a 5x5 random grid, bicubically upscaled, amplitude
  10-50); zero-mean noise (std 6, triangular) goes on top. Layers combine by maximum.

  Args:
    rng: the generator; the output is a pure function of its state and the
      other arguments.
    digits: ``[B, 8, 8]`` source digits, intensities 0..16
      (``load_digits().images``), none blank.
    clutter_digits: ``[B, K, 8, 8]`` other source digits, one fragment from
      each used one (the caller picks them, so it can keep them in a split).
    num_clutter: int ``[B]`` in 0..K, how many of each row's ``clutter_digits``
      to use; all ``K`` if None.
    canvas_size: side of the square canvas, at least 8.

  Returns:
    ``RenderedDigits`` with ``image`` uint8 ``[B, S, S, 1]``, ``mask`` uint8
    ``[B, S, S]`` and ``box`` int32 ``[B, 4]``, each mask's tight box
    ``(y0, x0, y1, x1)``, end-exclusive.

  Raises:
    ValueError: bad shapes, a canvas smaller than 8, a blank digit, or
      ``num_clutter`` out of range.

  Example:
    >>> from sklearn.datasets import load_digits
    >>> imgs = load_digits().images
    >>> out = render_cluttered_digits(np.random.default_rng(0), imgs[:2],
    ...                               np.stack([imgs[2:5], imgs[5:8]]), canvas_size=32)
    >>> out.image.shape, out.mask.shape, out.box.shape
    ((2, 32, 32, 1), (2, 32, 32), (2, 4))
  """
  digits = np.asarray(digits, np.float32)
  clutter_digits = np.asarray(clutter_digits, np.float32)
  if digits.ndim != 3 or digits.shape[1:] != (SOURCE_SIZE, SOURCE_SIZE):
    raise ValueError(f"digits must have shape [B, 8, 8]; got {digits.shape}")
  b = len(digits)
  if (
    clutter_digits.ndim != 4
    or clutter_digits.shape[0] != b
    or clutter_digits.shape[2:] != (SOURCE_SIZE, SOURCE_SIZE)
  ):
    raise ValueError(
      f"clutter_digits must have shape [B, K, 8, 8] with B={b}; got {clutter_digits.shape}"
    )
  k = clutter_digits.shape[1]
  num_clutter = np.full(b, k) if num_clutter is None else np.asarray(num_clutter)
  if num_clutter.shape != (b,) or (num_clutter < 0).any() or (num_clutter > k).any():
    raise ValueError(f"num_clutter must be ints [B={b}] in 0..K={k}; got {num_clutter!r}")
  if canvas_size < SOURCE_SIZE:
    raise ValueError(f"canvas_size must be at least {SOURCE_SIZE}; got {canvas_size}")
  if b and not (digits.reshape(b, -1).max(1) > 0).all():
    raise ValueError("digits contains a blank (all-zero) digit")
  s = canvas_size
  low, high = digit_size_range(s)

  # The digits, and their ground truth before any clutter.
  sizes = rng.integers(low, high + 1, size=b)
  ys = rng.integers(0, s - sizes + 1)
  xs = rng.integers(0, s - sizes + 1)
  peaks = rng.uniform(*_DIGIT_PEAK, size=b).astype(np.float32)
  layer = np.zeros((b, s, s), np.float32)
  for size in np.unique(sizes):
    members = np.flatnonzero(sizes == size)
    ups = _upscale_ink(digits[members], (size, size))
    for i, up in zip(members, ups):
      layer[i, ys[i] : ys[i] + size, xs[i] : xs[i] + size] = up
  strokes = layer > MASK_THRESHOLD
  for i in np.flatnonzero(~strokes.any(axis=(1, 2))):  # A faint digit: its brightest pixels.
    strokes[i] = layer[i] >= 0.5 * layer[i].max()
  masks = strokes.astype(np.uint8)
  boxes = tight_boxes(masks)
  ink = peaks[:, None, None] * layer

  # Fragments of other digits, kept (mostly) off their digit's box.
  owner, slot = np.nonzero(np.arange(k)[None, :] < num_clutter[:, None])
  if owner.size:
    sources = clutter_digits[owner, slot]
    ch, cw, cy, cx = _crop_windows(rng, sources)
    scale = rng.integers(low, high + 1, size=owner.size) / SOURCE_SIZE
    fh = np.clip(np.rint(ch * scale).astype(np.int64), 1, s)
    fw = np.clip(np.rint(cw * scale).astype(np.int64), 1, s)
    fy, fx = _place(rng, fh, fw, s, boxes[owner])
    frag_peaks = peaks[owner] * rng.uniform(*_CLUTTER_RELATIVE_PEAK, size=owner.size)
    groups = np.stack([ch, cw, fh, fw], axis=1)
    for key in np.unique(groups, axis=0):
      h, w, gh, gw = (int(v) for v in key)
      members = np.flatnonzero((groups == key).all(axis=1))
      crops = np.stack([sources[j, cy[j] : cy[j] + h, cx[j] : cx[j] + w] for j in members])
      frags = _upscale_ink(crops, (gh, gw)) * frag_peaks[members, None, None]
      for j, frag in zip(members, frags):
        region = ink[owner[j], fy[j] : fy[j] + gh, fx[j] : fx[j] + gw]
        np.maximum(region, frag, out=region)

  grid = rng.random((b, _BACKGROUND_GRID, _BACKGROUND_GRID), dtype=np.float32)
  amplitude = rng.uniform(*_BACKGROUND_AMPLITUDE, size=b).astype(np.float32)
  background = np.clip(_resize(grid, (s, s)), 0.0, 1.0) * amplitude[:, None, None]
  canvas = np.maximum(background, ink)
  # Triangular noise (difference of two uniforms) with std _NOISE_STD: it looks
  # like Gaussian noise and costs a fraction of drawing normals.
  uniform = rng.random((2, b, s, s), dtype=np.float32)
  canvas += (_NOISE_STD * np.sqrt(6.0, dtype=np.float32)) * (uniform[0] - uniform[1])
  images = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)[..., None]
  return RenderedDigits(image=images, mask=masks, box=boxes)


def render_cluttered_digit(
  rng: np.random.Generator,
  digit: np.ndarray,
  clutter_digits: np.ndarray,
  *,
  canvas_size: int = 64,
) -> RenderedDigits:
  """Renders one digit on a cluttered canvas (``render_cluttered_digits`` for one).

  Args:
    rng: the generator.
    digit: ``[8, 8]`` source digit, intensities 0..16.
    clutter_digits: ``[K, 8, 8]`` other source digits, one fragment from each.
    canvas_size: side of the square canvas, at least 8.

  Returns:
    ``RenderedDigits`` without the batch axis: ``image`` uint8 ``[S, S, 1]``,
    ``mask`` uint8 ``[S, S]``, ``box`` int32 ``[4]``.

  Raises:
    ValueError: as ``render_cluttered_digits``.

  Example:
    >>> from sklearn.datasets import load_digits
    >>> imgs = load_digits().images
    >>> ex = render_cluttered_digit(np.random.default_rng(0), imgs[0], imgs[1:4],
    ...                             canvas_size=32)
    >>> ex.image.shape, ex.box.dtype
    ((32, 32, 1), dtype('int32'))
  """
  digit = np.asarray(digit)
  clutter_digits = np.asarray(clutter_digits)
  if digit.shape != (SOURCE_SIZE, SOURCE_SIZE):
    raise ValueError(f"digit must have shape (8, 8); got {digit.shape}")
  if clutter_digits.ndim != 3:
    raise ValueError(f"clutter_digits must have shape [K, 8, 8]; got {clutter_digits.shape}")
  out = render_cluttered_digits(rng, digit[None], clutter_digits[None], canvas_size=canvas_size)
  return RenderedDigits(*(a[0] for a in out))
