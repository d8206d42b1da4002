"""ImageNet transforms on synthetic images of varying size (ImageNet itself is not available here)."""

import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxsal import data
from jaxsal.data.imagenet import random_resized_crop_box
from jaxsal.train._inputs import transforms as _transforms


def _source(n=12, seed=0):
  rng = np.random.default_rng(seed)
  shapes = [(int(rng.integers(20, 90)), int(rng.integers(20, 90))) for _ in range(n)]
  return [
    {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "label": i % 5}
    for i, (h, w) in enumerate(shapes)
  ]


def test_random_crop_boxes_lie_inside_and_respect_area_and_ratio():
  rng = np.random.default_rng(0)
  for _ in range(500):
    h, w = int(rng.integers(10, 300)), int(rng.integers(10, 300))
    y0, x0, ch, cw = random_resized_crop_box(rng, h, w)
    assert y0 >= 0 and y0 + ch <= h and x0 >= 0 and x0 + cw <= w and ch > 0 and cw > 0


def test_eval_transform_is_resize_then_central_crop():
  image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
  out = data.EvalTransform(32).map({"image": image, "label": 3})
  # Shorter side 40 -> round(32 / 0.875) = 37; longer 60 -> round(60 * 37 / 40) = 56.
  resized = np.asarray(Image.fromarray(image).resize((56, 37), Image.BILINEAR))
  np.testing.assert_array_equal(out["image"], resized[2:34, 12:44])
  assert out["label"] == 3


def test_train_batches_have_one_size_and_are_deterministic_per_seed():
  src = _source()

  def first(seed):
    it = data.make_batches(src, batch_size=4, seed=seed, preprocess=data.TrainTransform(32))
    return [next(it) for _ in range(3)]

  a, b, c = first(0), first(0), first(1)
  assert a[0]["image"].shape == (4, 32, 32, 3) and a[0]["image"].dtype == np.float32
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_loop_picks_transforms_only_for_varying_sizes():
  cfg = ml_collections.ConfigDict({"dataset": {"name": "imagenet2012", "image_size": 64}})
  train_pre, eval_pre, shape = _transforms(cfg, {"image_shape": (None, None, 3)})
  assert isinstance(train_pre, data.TrainTransform) and isinstance(eval_pre, data.EvalTransform)
  assert shape == (64, 64, 3)
  assert _transforms(cfg, {"image_shape": (64, 64, 1)}) == (None, None, (64, 64, 1))
  cfg.dataset.image_size = 0
  with pytest.raises(ValueError, match="varying size .*dataset.image_size"):
    _transforms(cfg, {"image_shape": (None, None, 3)})
