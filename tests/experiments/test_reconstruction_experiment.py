"""The reconstruction experiment: its counts equal a hand recomputation; no generator is a clear error."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A
from jaxsal import configs, data, train
from jaxsal.experiments import _common, reconstruction


def test_config_variants_validate():
  for spec in ("reconstruction_digits", "reconstruction_digits:test"):
    reconstruction.validate(configs.get_config(spec))
  c = configs.get_config("reconstruction_digits:test")
  for override, match in (
    ("methods=('lime',)", "unknown method 'lime'"),
    ("areas=(0.0,)", r"areas must be fractions in \(0, 1\]; got 0.0"),
    ("seeds=()", "seeds must hold at least one seed"),
    ("methods.optimized_mask.steps=0", "methods.optimized_mask.steps must be a positive"),
    (
      "methods.optimized_mask.lam_area=-1.0",
      "methods.optimized_mask.lam_area must be a number >= 0; got -1.0",
    ),
  ):
    with pytest.raises(ValueError, match=match):
      reconstruction.validate(configs.apply_overrides(c, [override]))


def test_no_generator_is_a_clear_error_before_anything_is_written(tmp_path):
  c = configs.get_config("reconstruction_digits:test")
  with pytest.raises(FileNotFoundError, match="no generative model in .*train one first"):
    reconstruction.run(c, str(tmp_path / "fresh"), progress=False)
  assert not (tmp_path / "fresh").exists()


def test_kept_decisions_equal_a_recomputation_by_hand(data_dir, test_classifier_workdir, tmp_path):
  gc = configs.apply_overrides(
    configs.get_config("generator_digits:test"),
    [f"dataset.data_dir={data_dir}", "num_train_steps=2"],
  )
  gen_dir = str(tmp_path / "generator")
  train.train_generator(gc, gen_dir, progress=False)
  c = configs.apply_overrides(
    configs.get_config("reconstruction_digits:test"),
    [f"classifier.dataset.data_dir={data_dir}", f"generator_workdir={gen_dir}"],
  )
  res = reconstruction.run(c, test_classifier_workdir, progress=False)
  # The registry's methods in the registry's order, then the experiment's own rows.
  assert list(res["rows"]) == ["gradient", "optimized_mask", "masker", "random_pixels"]
  saved = json.load(open(res["path"]))
  assert saved["rows"] == res["rows"]

  # The gradient row at 30%, seed 1, by hand: top 30% of |gradient|, the same
  # per-image sample keys, the classifier's top-1 on each reconstruction.
  apply_fn, params, _ = _common.trained_classifier(
    c.classifier, test_classifier_workdir, progress=False
  )
  test = data.load_source("cluttered_digits", "test", config="small", data_dir=data_dir)
  x = jnp.asarray(np.stack([np.asarray(test[i]["image"], np.float32) / 255 for i in range(8)]))
  pred = apply_fn(params, x).argmax(-1)
  mask = A.keep_top(jnp.abs(A.gradient(apply_fn, params, x, pred)).sum(-1), 0.3)
  assert int(mask.sum()) == 8 * round(0.3 * 32 * 32)
  seed_key = jax.random.fold_in(jax.random.key(1), 1_000_003)
  keys = jax.vmap(lambda i: jax.random.fold_in(seed_key, i))(jnp.arange(8))
  rec = A.reconstruct(train.load_generator(gen_dir), x, mask, key=keys, num_samples=2)
  top = apply_fn(params, rec.reshape(16, 32, 32, 1)).argmax(-1).reshape(2, 8)
  kept = float(jnp.mean(top == pred[None]))
  np.testing.assert_allclose(res["rows"]["gradient"]["0.3"]["kept_per_seed"][1], kept, atol=1e-6)

  for name, row in res["rows"].items():
    for stats in row.values():
      assert all(0.0 <= k <= 1.0 for k in stats["kept_per_seed"])
      assert len(stats["kept_per_seed"]) == 2
  loc = res["localization"]
  assert loc["count"] == 8 and 0.0 <= loc["le"] <= 1.0
  table = reconstruction.format_table(res)
  assert "none kept (area 0)" in table and "optimized_mask localisation on 8 images" in table
