"""The localisation experiment: maskers, the centre box and gradient methods on the same images."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A
from jaxsal import configs, data, metrics, parallel
from jaxsal.experiments import _common, localization


def test_config_variants_validate():
  for spec in ("localization_digits", "localization_digits:test"):
    localization.validate(configs.get_config(spec))
  c = configs.get_config("localization_digits:test")
  for override, match in (
    ("methods=('lrp',)", "unknown method 'lrp'"),
    ("num_images=0", "num_images must be a positive integer"),
    ("maskers=('fixed',)", "maskers.fixed is empty"),
    ('maskers.test.masker.layers=("l7",)', "unknown tap 'l7'"),
  ):
    with pytest.raises(ValueError, match=match):
      localization.validate(configs.apply_overrides(c, [override]))


def test_every_row_is_scored_on_the_same_images(data_dir, test_masker_workdir):
  c = configs.apply_overrides(
    configs.get_config("localization_digits:test"), [f"classifier.dataset.data_dir={data_dir}"]
  )
  res = localization.run(c, test_masker_workdir, progress=False)
  assert list(res["rows"]) == ["masker test", "center box", "gradient", "gradcam"]
  assert all(r["count"] == 32 for r in res["rows"].values())
  # The masker's row is its own evaluation after training (same 32 images).
  own = json.load(open(f"{test_masker_workdir}/maskers/test/eval.json"))["metrics"]
  for k in ("le", "om", "f1", "pxap", "area", "sm"):
    np.testing.assert_allclose(res["rows"]["masker test"][k], own[k], rtol=1e-5, err_msg=k)

  test = data.load_source("cluttered_digits", "test", config="small", data_dir=data_dir)
  train = data.load_source("cluttered_digits", "train", config="small", data_dir=data_dir)
  gt = np.stack([np.asarray(test[i]["box"]) for i in range(32)])
  # The centre box: the mean training box size, centred; LE by hand.
  tb = np.stack([np.asarray(train[i]["box"]) for i in range(64)])
  bh = int(round((tb[:, 2] - tb[:, 0]).mean()))
  bw = int(round((tb[:, 3] - tb[:, 1]).mean()))
  y0, x0 = (32 - bh) // 2, (32 - bw) // 2
  iy = np.clip(np.minimum(gt[:, 2], y0 + bh) - np.maximum(gt[:, 0], y0), 0, None)
  ix = np.clip(np.minimum(gt[:, 3], x0 + bw) - np.maximum(gt[:, 1], x0), 0, None)
  inter = iy * ix
  union = bh * bw + (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]) - inter
  np.testing.assert_allclose(res["rows"]["center box"]["le"], np.mean(inter / union <= 0.5))
  np.testing.assert_allclose(res["rows"]["center box"]["area"], bh * bw / 32**2, rtol=1e-6)

  # The gradient row: |gradient| of the predicted class over its per-image maximum.
  apply_fn, params, _ = _common.trained_classifier(
    c.classifier, test_masker_workdir, progress=False
  )
  # The images as the experiment reads them (uint8 scaled to [0, 1], then back
  # to [0, 255]: 6e-8 off the integers), in batches of config.batch_size split
  # over the 8 devices. On this barely trained classifier the input gradient
  # cancels so much that a 6e-8 change of the input moves the mean map by 5e-4.
  raw = np.stack([np.asarray(test[i]["image"]) for i in range(32)]).astype(np.float32)
  x = _common.normalize(c.classifier, raw * np.float32(1 / 255) * 255.0)

  @jax.jit
  def hand(xb):
    pred = apply_fn(params, xb).argmax(-1)
    g = jnp.abs(A.gradient(apply_fn, params, xb, pred)).sum(-1)
    return g / g.max((1, 2), keepdims=True)

  mesh = parallel.make_mesh()
  b = int(c.batch_size)
  g = jnp.concatenate(
    [parallel.gather(hand(parallel.shard_batch(x[i : i + b], mesh))) for i in range(0, 32, b)]
  )
  boxes = jax.vmap(metrics.mask_to_box)(g)
  le = metrics.localization_error(boxes, jnp.asarray(gt)[:, None])
  np.testing.assert_allclose(res["rows"]["gradient"]["le"], float(le.mean()), rtol=1e-6)
  np.testing.assert_allclose(res["rows"]["gradient"]["area"], float(g.mean()), rtol=1e-4)
  table = localization.format_table(res)
  assert table.splitlines()[0].split(" | ")[:3] == ["map        ", "LE   ", "OM   "]
  assert "center box" in table and json.load(open(res["path"]))["num_images"] == 32
