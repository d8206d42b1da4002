"""The grid pointing experiment end to end on a tiny classifier."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A
from jaxsal import configs, metrics, models
from jaxsal.experiments import grid_pointing


def test_config_variants_validate():
  for spec in ("grid_pointing_digits", "grid_pointing_digits:test"):
    c = configs.get_config(spec)
    grid_pointing.validate(c)
  c = configs.get_config("grid_pointing_digits:test")
  for override, match in (
    ("tau=1.0", "tau must be"),
    ("temperature=0.0", "temperature must be"),
    ("smooth=2", "smooth must be 0 or an odd"),
    ("methods=('lrp',)", "unknown method 'lrp'"),
    ("grid_sizes=(1,)", "grid_sizes entries must be >= 2"),
  ):
    with pytest.raises(ValueError, match=match):
      grid_pointing.validate(configs.apply_overrides(c, [override]))


def test_scores_are_the_pointing_game_of_each_variant_of_each_cell():
  model = models.SmallCNN(num_classes=10, widths=(4, 4, 4, 4, 4))
  apply_fn, params = models.from_linen(
    model, models.init_model(model, jax.random.key(0), (1, 16, 16, 1))
  )
  grids = jax.random.uniform(jax.random.key(1), (2, 32, 32, 1))
  labels = jnp.array([[3, 1, 4, 0], [9, 2, 6, 5]])
  c = configs.apply_overrides(
    configs.get_config("grid_pointing_digits:test"), ["methods=('gradient', 'gradcam')"]
  )
  out = jax.jit(grid_pointing.make_scores_fn(apply_fn, c, 2))(params, grids, labels)
  assert sorted(out) == sorted(
    f"{m}/{v}" for m in ("gradient", "gradcam") for v in grid_pointing.VARIANTS
  )
  direct = jax.jit(
    lambda t: {
      "alone": A.gradient(apply_fn, params, grids, t),
      "cgi": A.competition(A.gradient)(apply_fn, params, grids, t),
      "var": A.var(A.gradient, classes=labels.T, tau=c.tau)(apply_fn, params, grids, t),
    }
  )
  for k in range(4):
    want = direct(labels[:, k])
    for v, maps in want.items():
      score, empty = out[f"gradient/{v}"]
      np.testing.assert_allclose(
        score[:, k], metrics.grid_pointing_game(maps, jnp.full((2,), k), n=2), rtol=1e-5, atol=1e-6
      )
      np.testing.assert_array_equal(empty[:, k], (np.asarray(maps).sum(-1) > 0).sum((1, 2)) == 0)


def test_play_summarises_every_method_and_variant_over_grids_of_distinct_classes():
  model = models.SmallCNN(num_classes=10, widths=(4, 4, 4, 4, 4))
  apply_fn, params = models.from_linen(
    model, models.init_model(model, jax.random.key(0), (1, 16, 16, 1))
  )
  rng = np.random.default_rng(0)
  images = rng.random((40, 16, 16, 1)).astype(np.float32)
  labels = np.arange(40) % 10
  c = configs.apply_overrides(
    configs.get_config("grid_pointing_digits:test"),
    [
      "num_grids=3",
      "methods=('gradient_x_input', 'integrated_gradients')",
      "methods.integrated_gradients.steps=2",
      "grid_sizes=(2, 3)",
    ],
  )
  res = grid_pointing.play(c, apply_fn, params, images, labels, progress=False)
  assert res["images_used"] == 40
  for n in (2, 3):
    summary = res["grids"][f"{n}x{n}"]
    assert len(summary) == 2 * 3
    for s in summary.values():
      assert s["count"] == 3 * n * n and 0.0 <= s["mean"] <= 1.0 and len(s["per_cell"]) == n * n
      assert 0.0 <= s["empty_share"] <= 1.0
  # The first 2x2 grid's gradient x input scores, recomputed from its maps.
  g = __import__("jaxsal").data.compose_grids(images, labels, n=2, num_grids=3, seed=c.seed + 2)
  x, lab = jnp.asarray(g["image"]), jnp.asarray(g["labels"])
  want = np.stack(
    [
      metrics.grid_pointing_game(
        A.gradient_x_input(apply_fn, params, x, lab[:, k]), jnp.full((3,), k), n=2
      )
      for k in range(4)
    ],
    1,
  )
  got = res["grids"]["2x2"]["gradient_x_input/alone"]
  np.testing.assert_allclose(got["mean"], want.mean(), rtol=1e-5)
  np.testing.assert_allclose(got["per_cell"], want.mean(0), rtol=1e-5)
  table = grid_pointing.format_table({"grids": res["grids"]})
  assert "integrated_gradients" in table and "chance" in table and "0.111" in table
