"""Occlusion: the drop of the target logit when a patch is replaced by a baseline value."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal._checks import check_positive_int
from jaxsal.attribution._common import ApplyFn, check_inputs, poison_invalid, target_logits


def _pair(v, name):
  v = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
  if len(v) != 2:
    raise ValueError(f"{name} must be an int or a pair (height, width); got {v}")
  for i in v:
    check_positive_int(i, name)
  return v


def occlusion(
  apply_fn: ApplyFn,
  params: Any,
  x: jax.Array,
  target: jax.Array,
  *,
  key: jax.Array | None = None,
  patch: Any = 8,
  stride: Any = 4,
  baseline: float = 0.0,
  chunk_size: int | None = 64,
) -> jax.Array:
  """Occlusion sensitivity (Zeiler & Fergus 2014).

  A ``patch`` (all channels) slides over the image with ``stride``; at each
  position the patch is set to ``baseline`` and the drop ``z_t(x) -
  z_t(x_occluded)`` is added to every pixel under the patch. Each pixel's sum
  is divided by the number of patches that covered it (Captum's convention).
  Patches start at ``0, stride, 2 stride, ...`` while they overlap the image;
  when the stride does not divide ``size - patch``, the last one is clipped
  by the border (as Captum), so every pixel is covered unless the stride
  exceeds the patch (then the gaps between patches get 0).

  Args:
    apply_fn, params, x, target: the attribution contract.
    key: unused; accepted for a uniform signature.
    patch: patch size, int or (height, width); at most the image size.
    stride: step between patches, int or (height, width).
    baseline: the value an occluded pixel takes.
    chunk_size: patch positions evaluated per forward pass (``lax.map``).

  Returns:
    ``[B, H, W, C]``, the same value in every channel of a pixel.

  References:
    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", 2014.
  """
  del key
  x, target = check_inputs(apply_fn, params, x, target)
  _, h, w, c = x.shape
  ph, pw = _pair(patch, "patch")
  sh, sw = _pair(stride, "stride")
  if ph > h or pw > w:
    raise ValueError(f"patch {(ph, pw)} is larger than the image {(h, w)}")
  # As Captum: when the stride does not divide (size - patch), one more
  # window, clipped by the border, covers the last rows and columns.
  ys = np.arange(-(-(h - ph) // sh) + 1) * sh
  xs = np.arange(-(-(w - pw) // sw) + 1) * sw
  masks = np.zeros((len(ys) * len(xs), h, w), np.float32)
  for i, (y0, x0) in enumerate((a, b) for a in ys for b in xs):
    masks[i, y0 : y0 + ph, x0 : x0 + pw] = 1.0
  count = masks.sum(0)
  clean = target_logits(apply_fn, params, x, target)

  def drop(m):
    m = m[None, :, :, None].astype(x.dtype)
    return clean - target_logits(apply_fn, params, x * (1 - m) + baseline * m, target)

  drops = jax.lax.map(drop, jnp.asarray(masks), batch_size=chunk_size)  # [P, B]
  total = jnp.einsum("pb,phw->bhw", drops, jnp.asarray(masks, x.dtype))
  per_pixel = total / jnp.asarray(np.maximum(count, 1.0), x.dtype)
  maps = jnp.broadcast_to(per_pixel[..., None], x.shape)
  return poison_invalid(maps, apply_fn, params, x, target)
