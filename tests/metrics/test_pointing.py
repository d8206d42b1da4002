"""The grid pointing game on hand-made maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxsal import metrics


def test_scores_are_the_share_of_positive_mass_in_the_cell():
  m = np.zeros((3, 4, 4), np.float32)
  m[0, 0, 0], m[0, 3, 3], m[0, 1, 3] = 3.0, 1.0, -5.0  # negatives do not count
  m[1] = 1.0  # uniform: 1 / n^2
  got = metrics.grid_pointing_game(jnp.asarray(m), jnp.array([0, 2, 1]), n=2)
  np.testing.assert_allclose(got, [0.75, 0.25, 0.0])  # map 2 is all zero: points nowhere
  got = metrics.grid_pointing_game(jnp.asarray(m), jnp.array([3, 0, 0]), n=2)
  np.testing.assert_allclose(got, [0.25, 0.25, 0.0])
  # Channels are summed first; a 3x3 grid of 2x2 cells.
  m3 = np.zeros((1, 6, 6, 2), np.float32)
  m3[0, 4, 5, 0], m3[0, 4, 5, 1], m3[0, 0, 0, 1] = 2.0, 1.0, 1.0
  np.testing.assert_allclose(
    metrics.grid_pointing_game(jnp.asarray(m3), jnp.array([8]), n=3), [0.75]
  )


def test_smoothing_is_a_zero_padded_box_filter_like_scipy():
  rng = np.random.default_rng(0)
  m = rng.standard_normal((2, 12, 12)).astype(np.float32)
  for k in (3, 5):
    want = np.stack([ndimage.uniform_filter(a, size=k, mode="constant", cval=0.0) for a in m])
    np.testing.assert_allclose(metrics.smooth_maps(jnp.asarray(m), k), want, rtol=1e-5, atol=1e-6)
  cells = jnp.array([1, 2])
  smooth = metrics.grid_pointing_game(jnp.asarray(m), cells, n=2, smooth=3)
  want = metrics.grid_pointing_game(metrics.smooth_maps(jnp.asarray(m), 3), cells, n=2)
  np.testing.assert_allclose(smooth, want)
  np.testing.assert_allclose(
    jax.jit(lambda a, c: metrics.grid_pointing_game(a, c, n=2, smooth=3))(jnp.asarray(m), cells),
    want,
    rtol=1e-6,
  )


def test_summary_pools_and_splits_by_cell():
  s = metrics.summarize_pointing([1.0, 0.5, 0.0, 0.5], [0, 0, 3, 2], n=2)
  assert s["mean"] == 0.5 and s["count"] == 4
  np.testing.assert_allclose(s["std"], np.std([1.0, 0.5, 0.0, 0.5], ddof=1))
  np.testing.assert_allclose(s["per_cell"][0], 0.75)
  assert np.isnan(s["per_cell"][1]) and s["per_cell"][2] == 0.5 and s["per_cell"][3] == 0.0


def test_confident_correct_applies_the_threshold():
  def apply_fn(p, x):  # logits (x00, 0): class 0 with probability sigmoid(x00)
    return jnp.stack([x[:, 0, 0, 0], jnp.zeros(x.shape[0])], 1)

  x = jnp.asarray(
    np.array([3.0, 1.0, -3.0, 3.0]).reshape(4, 1, 1, 1) * np.ones((4, 2, 2, 1)), jnp.float32
  )
  keep = metrics.confident_correct(
    apply_fn, None, x, np.array([0, 0, 1, 1]), min_confidence=0.9, batch_size=3
  )
  np.testing.assert_array_equal(keep, [True, False, True, False])  # sigmoid(1) = 0.73 < 0.9


def test_bad_input_is_named():
  m = jnp.zeros((2, 4, 4))
  with pytest.raises(ValueError, match="do not split into a 3x3 grid"):
    metrics.grid_pointing_game(m, jnp.array([0, 1]), n=3)
  with pytest.raises(ValueError, match=r"cell must lie in \[0, 4\)"):
    metrics.grid_pointing_game(m, jnp.array([0, 4]), n=2)
  with pytest.raises(ValueError, match=r"cell must be an int array \[B\] = \[2\]"):
    metrics.grid_pointing_game(m, jnp.array([0]), n=2)
  with pytest.raises(ValueError, match="smooth must be an odd window"):
    metrics.grid_pointing_game(m, jnp.array([0, 1]), n=2, smooth=2)
  with pytest.raises(ValueError, match="min_confidence"):
    metrics.confident_correct(
      lambda p, x: x, None, np.zeros((1, 2, 2, 1)), np.zeros(1, int), min_confidence=1.5
    )
