"""ImageNet's standard per-example transforms, in numpy and PIL (no TensorFlow).

Training: a random crop of 8%-100% of the image's area with aspect ratio in
[3/4, 4/3] (ten tries, then the central crop), resized to ``size`` and
flipped left-right with probability 0.5. Evaluation: the shorter side resized
to ``size / 0.875`` and the central ``size x size`` crop. Both return uint8
images of one size, which ``make_batches`` then batches and scales to [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import grain
import numpy as np
from PIL import Image


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def _as_rgb(image: Any) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.dtype != np.uint8:
    raise ValueError(f"expected a uint8 image [H, W, C]; got {image.dtype} {image.shape}")
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return image


def random_resized_crop_box(
  rng: np.random.Generator,
  height: int,
  width: int,
  *,
  scale=(0.08, 1.0),
  ratio=(3 / 4, 4 / 3),
  tries: int = 10,
):
  """A crop ``(y0, x0, h, w)`` of random area fraction in ``scale`` and aspect ratio in ``ratio``."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(tries):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  # Fall back to the central crop, clamped to the allowed aspect ratios.
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    h, w = height, int(round(height * ratio[1]))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


class TrainTransform(grain.transforms.RandomMap):
  """Random-resized crop and flip to ``size x size``; seeded per example by grain.

  Example:
    >>> import numpy as np
    >>> from jaxsal.data import TrainTransform, make_batches
    >>> src = [{"image": np.zeros((30, 40, 3), np.uint8), "label": i} for i in range(8)]
    >>> batch = next(make_batches(src, batch_size=4, seed=0, preprocess=TrainTransform(16)))
    >>> batch["image"].shape  # e.g. TrainTransform(224) for ImageNet
    (4, 16, 16, 3)
  """

  def __init__(self, size: int = 224):
    self.size = int(size)

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    image = _as_rgb(element["image"])
    y0, x0, h, w = random_resized_crop_box(rng, image.shape[0], image.shape[1])
    out = _resize(image[y0 : y0 + h, x0 : x0 + w], self.size, self.size)
    if rng.random() < 0.5:
      out = out[:, ::-1]
    return {"image": np.ascontiguousarray(out), "label": element["label"]}


class EvalTransform(grain.transforms.Map):
  """Shorter side to ``size / crop_fraction``, then the central ``size x size`` crop."""

  def __init__(self, size: int = 224, crop_fraction: float = 0.875):
    self.size = int(size)
    self.crop_fraction = float(crop_fraction)

  def map(self, element: dict) -> dict:
    image = _as_rgb(element["image"])
    h, w = image.shape[:2]
    short = int(round(self.size / self.crop_fraction))
    nh, nw = (
      (short, max(short, int(round(w * short / h))))
      if h <= w
      else (max(short, int(round(h * short / w))), short)
    )
    image = _resize(image, nh, nw)
    y0, x0 = (nh - self.size) // 2, (nw - self.size) // 2
    return {"image": image[y0 : y0 + self.size, x0 : x0 + self.size], "label": element["label"]}
