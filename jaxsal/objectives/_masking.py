"""The masking objective of Phang, Park & Geras (2020), term by term.

Every term is a pure function returning ``(loss, aux)``: a scalar to
minimise and a dict of per-batch metrics. Masks are ``[B, H, W]`` or
``[B, H, W, 1]`` in [0, 1]; logits ``[B, K]``; labels int ``[B]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal import _checks

OBJECTIVES = ("in", "out", "both")


def _mask2d(mask: jax.Array) -> jax.Array:
  if mask.ndim == 4 and mask.shape[-1] == 1:
    mask = mask[..., 0]
  if mask.ndim != 3:
    raise ValueError(f"mask must be [B, H, W] or [B, H, W, 1]; got shape {tuple(mask.shape)}")
  return mask


def _correct(logits: jax.Array, y: jax.Array) -> jax.Array:
  return (jnp.argmax(logits, -1) == y).astype(jnp.float32)


def mask_in_loss(logits_in: jax.Array, y: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
  """Cross-entropy of the masked-in image's logits: the kept part must be recognised."""
  ce = -jnp.take_along_axis(jax.nn.log_softmax(logits_in, -1), y[:, None].astype(jnp.int32), 1)[
    :, 0
  ]
  return ce.mean(), {"ce_in": ce.mean(), "correct_on_masked_in": _correct(logits_in, y).mean()}


def mask_out_loss(
  logits_out: jax.Array, logits_clean: jax.Array, y: jax.Array
) -> tuple[jax.Array, dict[str, Any]]:
  """Minus the entropy of the masked-out prediction, on images the clean classifier gets right.

  ``-mean_b[H(softmax(logits_out))_b * 1[argmax logits_clean_b == y_b]]``:
  the removed part must leave the classifier unable to tell.
  """
  logp = jax.nn.log_softmax(logits_out, -1)
  entropy = -(jnp.exp(logp) * logp).sum(-1)
  correct = _correct(jax.lax.stop_gradient(logits_clean), y)
  return -(entropy * correct).mean(), {
    "entropy_out": entropy.mean(),
    "correct_on_clean": correct.mean(),
  }


def mask_in_area(
  mask: jax.Array, logits_in: jax.Array, y: jax.Array, *, weight: float
) -> tuple[jax.Array, dict[str, Any]]:
  """``-weight * mean_b relu(1[masked-in correct]_b - mean(m_b))``: shrink the mask once it suffices."""
  area = _mask2d(mask).mean((1, 2))
  correct = _correct(jax.lax.stop_gradient(logits_in), y)
  return -weight * jax.nn.relu(correct - area).mean(), {"mask_area": area.mean()}


def mask_out_area(
  mask: jax.Array, logits_out: jax.Array, logits_clean: jax.Array, y: jax.Array, *, weight: float
) -> tuple[jax.Array, dict[str, Any]]:
  """``-weight * mean_b relu(1[clean correct and masked-out wrong]_b - mean(m_b))``."""
  area = _mask2d(mask).mean((1, 2))
  confused = _correct(jax.lax.stop_gradient(logits_clean), y) * (
    1.0 - _correct(jax.lax.stop_gradient(logits_out), y)
  )
  return -weight * jax.nn.relu(confused - area).mean(), {
    "mask_area": area.mean(),
    "confused_out": confused.mean(),
  }


def total_variation(
  mask: jax.Array, *, weight: float, power: int = 2, border: float = 0.3
) -> tuple[jax.Array, dict[str, Any]]:
  """``weight * [sum |d_w m|^p + sum |d_h m|^p + border * sum_edges m^p] / (p * B)``.

  ``sum_edges`` runs over the first and last rows and columns (corner pixels
  twice), as in the official code.
  """
  m = _mask2d(mask)
  dw = (jnp.abs(m[:, :, 1:] - m[:, :, :-1]) ** power).sum()
  dh = (jnp.abs(m[:, 1:, :] - m[:, :-1, :]) ** power).sum()
  edges = (
    (m[:, 0, :] ** power).sum()
    + (m[:, -1, :] ** power).sum()
    + (m[:, :, 0] ** power).sum()
    + (m[:, :, -1] ** power).sum()
  )
  tv = weight * (dw + dh + border * edges) / (power * m.shape[0])
  return tv, {"tv": tv}


def masking_objective(
  mask: jax.Array,
  logits_clean: jax.Array,
  logits_in: jax.Array,
  logits_out: jax.Array,
  y: jax.Array,
  *,
  lam_in: float = 1.0,
  lam_out: float = 10.0,
  lam_tv: float = 1e-3,
  objective: str = "both",
  tv_counted_twice: bool = True,
) -> tuple[jax.Array, dict[str, Any]]:
  """The masker's loss: mask-in and/or mask-out terms, each with its area term and TV.

  ``(L_in + R_in + TV) + (L_out + R_out + TV)`` for ``objective='both'``.
  The official code adds TV once per side, so twice in total;
  ``tv_counted_twice=False`` adds it once.

  Args:
    mask: ``[B, H, W(, 1)]`` in [0, 1] (the full-resolution mask).
    logits_clean, logits_in, logits_out: the classifier on ``x``, the
      masked-in and the masked-out image.
    y: int ``[B]``.
    lam_in, lam_out, lam_tv: the area and TV weights (FIX preset 1, 10, 1e-3;
      CA 1, 15, 1e-3).
    objective: ``'in'``, ``'out'`` or ``'both'``.
    tv_counted_twice: see above (only matters for ``'both'``).

  Returns:
    ``(loss, aux)``: aux holds every term and its metrics.

  References:
    Phang, Park & Geras, "Investigating and Simplifying Masking-based
    Saliency Methods for Model Interpretability", 2020.
  """
  _checks.check_choice(objective, "objective", OBJECTIVES)
  for value, name in ((lam_in, "lam_in"), (lam_out, "lam_out"), (lam_tv, "lam_tv")):
    if not isinstance(value, (int, float)) or value < 0:
      raise ValueError(f"{name} must be a number >= 0; got {value!r}")
  tv, aux = total_variation(mask, weight=lam_tv)
  loss = jnp.zeros(())
  if objective in ("in", "both"):
    l_in, a = mask_in_loss(logits_in, y)
    r_in, b = mask_in_area(mask, logits_in, y, weight=lam_in)
    loss = loss + l_in + r_in + tv
    aux.update(a, **b, loss_in=l_in, area_in=r_in)
  if objective in ("out", "both"):
    l_out, a = mask_out_loss(logits_out, logits_clean, y)
    r_out, b = mask_out_area(mask, logits_out, logits_clean, y, weight=lam_out)
    loss = loss + l_out + r_out + (tv if (objective == "out" or tv_counted_twice) else 0.0)
    aux.update(a, **b, loss_out=l_out, area_out=r_out)
  aux["loss"] = loss
  return loss, aux


def apply_mask(
  x: jax.Array, mask: jax.Array, *, side: str = "in", infill: jax.Array | None = None
) -> jax.Array:
  """Masked-in ``x*m + g*(1-m)`` or masked-out ``x*(1-m) + g*m`` images.

  ``g`` is the infill (``infill_constant``, ``infill_blur``, or any image
  batch); None is 0, which in normalised inputs is the dataset mean.
  """
  _checks.check_choice(side, "side", ("in", "out"))
  m = _mask2d(mask)[..., None]
  keep = m if side == "in" else 1.0 - m
  g = jnp.zeros_like(x) if infill is None else infill
  return x * keep + g * (1.0 - keep)


def infill_constant(x: jax.Array, value: float = 0.0) -> jax.Array:
  """A constant infill of ``x``'s shape."""
  return jnp.full_like(x, value)


def _mirror_blur_matrix(n: int, sigma: float) -> np.ndarray:
  """``[n, n]``: a 1-D Gaussian blur with mirrored edges as a matrix (any kernel width)."""
  r = max(1, int(3 * sigma + 0.5))
  t = np.arange(-r, r + 1)
  w = np.exp(-0.5 * (t / sigma) ** 2)
  w /= w.sum()
  idx = np.mod(np.arange(n)[:, None] + t[None, :], 2 * n)
  idx = np.where(idx >= n, 2 * n - 1 - idx, idx)  # symmetric: the edge pixel repeats
  m = np.zeros((n, n))
  np.add.at(m, (np.repeat(np.arange(n), len(t)), idx.reshape(-1)), np.tile(w, n))
  return m.astype(np.float32)


def infill_blur(x: jax.Array, sigma: float = 20.0) -> jax.Array:
  """A Gaussian blur of ``[B, H, W, C]`` images: the blurred infill.

  Truncated at 3 sigma with mirrored edges (``scipy.ndimage.gaussian_filter``
  with ``mode='reflect', truncate=3``), folded as often as the kernel needs,
  so a kernel wider than the image still works.
  """
  if not sigma > 0:
    raise ValueError(f"sigma must be > 0; got {sigma!r}")
  _, h, w, _ = x.shape
  rows = jnp.asarray(_mirror_blur_matrix(h, float(sigma)))
  cols = jnp.asarray(_mirror_blur_matrix(w, float(sigma)))
  return jnp.einsum("ij,bjwc,kw->bikc", rows, x, cols)
