"""Weakly supervised localisation metrics of saliency masks (Phang et al.'s evaluation).

Boxes are int ``(y0, x0, y1, x1)``, end-exclusive. Everything here works
under ``jit`` and ``vmap``; the connected components are found by label
propagation in a ``while_loop``.

References:
  Phang, Park & Geras, "Investigating and Simplifying Masking-based
  Saliency Methods for Model Interpretability", 2020; Dabkowski & Gal,
  "Real Time Image Saliency for Black Box Classifiers", 2017; Choe et al.,
  "Evaluating Weakly Supervised Object Localization Methods Right", 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _concrete(x: Any) -> np.ndarray | None:
  """``x`` as numpy when its values are known (not a tracer under jit), else None."""
  try:
    return np.asarray(x)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None


def check_unit_masks(masks: Any, name: str = "masks") -> None:
  """Raises a ValueError if concrete ``masks`` have values outside [0, 1] (or NaN).

  Under ``jit`` the values are unknown and nothing is checked.
  """
  m = _concrete(masks)
  if m is None or m.size == 0:
    return
  lo, hi = float(np.min(m)), float(np.max(m))
  if not (lo >= 0.0 and hi <= 1.0):
    raise ValueError(
      f"{name} must hold values in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]. "
      "Normalise attribution maps first (e.g. |map| / max |map| per image)."
    )


def check_boxes_inside(boxes: Any, height: int, width: int, name: str = "boxes") -> None:
  """Raises a ValueError if concrete end-exclusive boxes leave the ``height x width`` image or are empty."""
  b = _concrete(boxes)
  if b is None or b.size == 0:
    return
  b = b.reshape(-1, 4)
  bad = (
    (b[:, 0] < 0)
    | (b[:, 1] < 0)
    | (b[:, 2] > height)
    | (b[:, 3] > width)
    | (b[:, 2] <= b[:, 0])
    | (b[:, 3] <= b[:, 1])
  )
  if bad.any():
    first = b[np.argmax(bad)].tolist()
    raise ValueError(
      f"{name} must be non-empty (y0, x0, y1, x1) boxes, end-exclusive, inside "
      f"the {height}x{width} image; {int(bad.sum())} are not, e.g. {first}"
    )


def _shift(a: jax.Array, dy: int, dx: int, fill) -> jax.Array:
  h, w = a.shape
  p = jnp.pad(a, ((1, 1), (1, 1)), constant_values=fill)
  return p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def largest_component(binary: jax.Array) -> jax.Array:
  """The largest 4-connected component of a bool ``[H, W]`` mask (bool ``[H, W]``).

  Ties go to the component whose first pixel comes first in raster order
  (as ``scipy.ndimage.label`` numbers them, with ``argmax`` over the counts).
  An empty mask gives the whole image, as the official code does.
  """
  h, w = binary.shape
  big = h * w
  start = jnp.where(binary, jnp.arange(big).reshape(h, w), big)

  def step(state):
    lab, _ = state
    nb = lab
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
      nb = jnp.minimum(nb, _shift(lab, dy, dx, big))
    new = jnp.where(binary, nb, big)
    return new, jnp.any(new != lab)

  lab, _ = jax.lax.while_loop(lambda s: s[1], step, (start, jnp.array(True)))
  counts = jnp.zeros(big + 1, jnp.int32).at[lab.reshape(-1)].add(1).at[big].set(0)
  best = jnp.argmax(counts)
  return jnp.where(binary.any(), lab == best, jnp.ones_like(binary))


def mask_to_box(mask: jax.Array) -> jax.Array:
  """A continuous ``[H, W]`` mask's box: binarised above its mean, largest component.

  Returns:
    int32 ``[4]`` ``(y0, x0, y1, x1)``, end-exclusive (the official code's
    box drops its last row and column; this one does not).
  """
  if mask.ndim != 2:
    raise ValueError(
      f"mask_to_box takes one mask [H, W] (vmap it for a batch); got shape {tuple(mask.shape)}"
    )
  comp = largest_component(mask > mask.mean())
  rows, cols = comp.any(1), comp.any(0)
  h, w = mask.shape
  y0 = jnp.argmax(rows)
  y1 = h - jnp.argmax(rows[::-1])
  x0 = jnp.argmax(cols)
  x1 = w - jnp.argmax(cols[::-1])
  return jnp.stack([y0, x0, y1, x1]).astype(jnp.int32)


def box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """IoU of end-exclusive boxes ``[..., 4]`` (broadcasting)."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  ih = jnp.maximum(0.0, jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]))
  iw = jnp.maximum(0.0, jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]))
  inter = ih * iw
  area = lambda c: (c[..., 2] - c[..., 0]) * (c[..., 3] - c[..., 1])
  union = area(a) + area(b) - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def _check_boxes(pred: jax.Array, gt: jax.Array) -> None:
  if pred.ndim != 2 or pred.shape[-1] != 4:
    raise ValueError(f"pred_boxes must be [B, 4]; got shape {tuple(pred.shape)}")
  if gt.ndim != 3 or gt.shape[-1] != 4 or gt.shape[0] != pred.shape[0]:
    raise ValueError(
      f"gt_boxes must be [B, G, 4] with B = {pred.shape[0]}; got shape {tuple(gt.shape)}"
    )


def localization_error(
  pred_boxes: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array | None = None, *, iou: float = 0.5
) -> jax.Array:
  """LE per image: 0 if the predicted box overlaps some ground-truth box with IoU > ``iou``, else 1.

  Args:
    pred_boxes: int ``[B, 4]``.
    gt_boxes: int ``[B, G, 4]``.
    gt_valid: optional bool ``[B, G]`` (padding boxes are False).
    iou: the overlap threshold (strict ``>``).
  """
  _check_boxes(pred_boxes, gt_boxes)
  hit = box_iou(pred_boxes[:, None], gt_boxes) > iou
  if gt_valid is not None:
    hit = hit & gt_valid
  return 1.0 - hit.any(1).astype(jnp.float32)


def official_metric(
  pred_boxes: jax.Array,
  gt_boxes: jax.Array,
  correct: jax.Array,
  gt_valid: jax.Array | None = None,
  *,
  iou: float = 0.5,
) -> jax.Array:
  """OM per image: LE that also counts a wrong top-1 classification as an error."""
  le = localization_error(pred_boxes, gt_boxes, gt_valid, iou=iou)
  return 1.0 - (1.0 - le) * jnp.asarray(correct, jnp.float32)


def box_masks(boxes: jax.Array, height: int, width: int) -> jax.Array:
  """float ``[..., H, W]`` masks, 1 inside each end-exclusive box."""
  ys = jnp.arange(height)[:, None]
  xs = jnp.arange(width)[None, :]
  b = boxes[..., None, None, :]
  inside = (ys >= b[..., 0]) & (ys < b[..., 2]) & (xs >= b[..., 1]) & (xs < b[..., 3])
  return inside.astype(jnp.float32)


def mask_f1(
  masks: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """F1 of continuous masks against ground-truth boxes: ``(F1, F1a)``, each ``[B]``.

  precision = sum(m * gt) / sum(m), recall = sum(m * gt) / area(gt); F1 is
  the best over an image's boxes, F1a their mean.
  """
  if masks.ndim != 3:
    raise ValueError(f"masks must be [B, H, W]; got shape {tuple(masks.shape)}")
  b, h, w = masks.shape
  check_unit_masks(masks)
  check_boxes_inside(gt_boxes, h, w, "gt_boxes")
  gt = box_masks(gt_boxes, h, w)  # [B, G, H, W]
  m = masks[:, None]
  overlap = (m * gt).sum((2, 3))
  precision = overlap / jnp.maximum(m.sum((2, 3)), 1e-12)
  recall = overlap / jnp.maximum(gt.sum((2, 3)), 1e-12)
  f1 = jnp.where(
    precision + recall > 0, 2 * precision * recall / jnp.maximum(precision + recall, 1e-12), 0.0
  )
  valid = jnp.ones(f1.shape, bool) if gt_valid is None else gt_valid
  best = jnp.where(valid, f1, -jnp.inf).max(1)
  mean = jnp.where(valid, f1, 0.0).sum(1) / jnp.maximum(valid.sum(1), 1)
  return best, mean


def pxap(masks: jax.Array, gt: jax.Array, *, num_thresholds: int = 100) -> jax.Array:
  """Pixel average precision of continuous masks in [0, 1] against ground-truth pixel masks.

  Pixels of the whole batch are pooled. A pixel is predicted positive at
  threshold ``t`` when ``mask >= t``, for ``t = 0, 0.01, ..., 0.99``; AP is
  ``sum_i (R_i - R_{i+1}) P_i`` over the thresholds in increasing order
  (``R`` past the last threshold is 0).
  """
  return pxap_from_counts(pxap_counts(masks, gt, num_thresholds=num_thresholds))


def pxap_counts(
  masks: jax.Array, gt: jax.Array, *, num_thresholds: int = 100
) -> dict[str, jax.Array]:
  """The counts PxAP is computed from, which add up over batches.

  Returns:
    ``{'tp': [T], 'predicted': [T], 'positives': []}``: per threshold, the
    true-positive and predicted-positive pixel counts, and the number of
    ground-truth pixels. Sum them over batches and pass the sums to
    ``pxap_from_counts`` for the PxAP of a whole dataset.
  """
  if jnp.shape(masks) != jnp.shape(gt):
    raise ValueError(
      f"masks {tuple(jnp.shape(masks))} and gt {tuple(jnp.shape(gt))} must have the same shape"
    )
  check_unit_masks(masks)
  t = jnp.arange(num_thresholds, dtype=jnp.float32) / num_thresholds
  pos = masks.reshape(-1)[None, :] >= t[:, None]  # [T, N]
  truth = gt.reshape(-1).astype(bool)[None, :]
  return {
    "tp": (pos & truth).sum(1).astype(jnp.float32),
    "predicted": pos.sum(1).astype(jnp.float32),
    "positives": truth.sum().astype(jnp.float32),
  }


def pxap_from_counts(counts: dict[str, jax.Array]) -> jax.Array:
  """PxAP from (summed) ``pxap_counts``."""
  tp, predicted = counts["tp"], counts["predicted"]
  precision = jnp.where(predicted > 0, tp / jnp.maximum(predicted, 1.0), 1.0)
  recall = tp / jnp.maximum(counts["positives"], 1.0)
  nxt = jnp.concatenate([recall[1:], jnp.zeros(1)])
  return ((recall - nxt) * precision).sum()


def saliency_metric(
  apply_fn: Callable,
  params: Any,
  x: jax.Array,
  boxes: jax.Array,
  target: jax.Array,
  *,
  min_area: float = 0.05,
) -> jax.Array:
  """Dabkowski & Gal's saliency metric per image: ``log(max(a, 0.05)) - log p_target``.

  The box's crop is resized (bilinearly, half-pixel centres, edges clamped
  to the crop) back to the input size and classified; ``a`` is the box's area as a fraction of the image. Lower is
  better: a small box the classifier still recognises.
  """
  b, h, w, _ = x.shape
  check_boxes_inside(boxes, h, w)

  def crop(img, box):
    # Crop, then resize with half-pixel centres and clamped edges (as resizing
    # the cropped tensor with torch's bilinear interpolate): pixels outside the
    # box never leak in.
    y0, x0, y1, x1 = [box[i].astype(jnp.float32) for i in range(4)]
    ys = y0 + (jnp.arange(h) + 0.5) * jnp.maximum(y1 - y0, 1.0) / h - 0.5
    xs = x0 + (jnp.arange(w) + 0.5) * jnp.maximum(x1 - x0, 1.0) / w - 0.5
    ys = jnp.clip(ys, y0, jnp.maximum(y1 - 1.0, y0))
    xs = jnp.clip(xs, x0, jnp.maximum(x1 - 1.0, x0))
    yy, xx = jnp.meshgrid(ys, xs, indexing="ij")
    sample = lambda c: jax.scipy.ndimage.map_coordinates(c, [yy, xx], order=1)
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(img)

  crops = jax.vmap(crop)(x, boxes)
  logp = jax.nn.log_softmax(apply_fn(params, crops), -1)
  logp_t = jnp.take_along_axis(logp, target[:, None].astype(jnp.int32), 1)[:, 0]
  area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(jnp.float32) / (h * w)
  return jnp.log(jnp.maximum(area, min_area)) - logp_t


def localization_scores(
  maps: jax.Array,
  gt_boxes: jax.Array,
  gt_masks: jax.Array,
  correct: jax.Array,
  *,
  gt_valid: jax.Array | None = None,
  apply_fn: Callable | None = None,
  params: Any = None,
  x: jax.Array | None = None,
  target: jax.Array | None = None,
) -> dict[str, jax.Array]:
  """Every localisation metric of a batch of maps, in a form that adds up over batches.

  Args:
    maps: ``[B, H, W]`` in [0, 1]: a masker's masks, or attribution maps
      normalised per image.
    gt_boxes: int ``[B, G, 4]`` end-exclusive; ``gt_valid`` bool ``[B, G]``.
    gt_masks: ``[B, H, W]`` ground-truth pixel masks (for PxAP).
    correct: ``[B]`` 1 where the explained classifier's top-1 is right (OM).
    apply_fn, params, x, target: the classifier, images and classes for the
      saliency metric; SM is left out when ``apply_fn`` is None.

  Returns:
    Per-image ``[B]`` arrays ``le``, ``om``, ``f1``, ``f1a``, ``area`` (mean
    mask value) and ``sm`` (if asked), the predicted ``boxes`` ``[B, 4]``,
    and ``pxap`` counts (see ``pxap_counts``) to sum over batches.
  """
  if maps.ndim != 3:
    raise ValueError(f"maps must be [B, H, W]; got shape {tuple(maps.shape)}")
  check_unit_masks(maps, "maps")
  boxes = jax.vmap(mask_to_box)(maps)
  f1, f1a = mask_f1(maps, gt_boxes, gt_valid)
  out = {
    "boxes": boxes,
    "le": localization_error(boxes, gt_boxes, gt_valid),
    "om": official_metric(boxes, gt_boxes, correct, gt_valid),
    "f1": f1,
    "f1a": f1a,
    "area": maps.mean((1, 2)),
    "pxap": pxap_counts(maps, gt_masks),
  }
  if apply_fn is not None:
    out["sm"] = saliency_metric(apply_fn, params, x, boxes, target)
  return out
