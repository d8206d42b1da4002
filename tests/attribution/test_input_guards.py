"""Values the methods cannot check before tracing: NaN and inf inputs, out-of-range targets.

Outside ``jit`` they are refused with a ValueError naming the argument; under
``jit`` one mechanism covers all of them: the maps of the offending images
are NaN (so that a finite check downstream, such as ``jaxsal explain``'s,
catches them) and the other images' maps are unchanged; never another
class's map, a silent zero map or a runtime error from a host callback.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A
from jaxsal import models

K = 10
# Small hyperparameters: these tests are about the guards, not the maps.
FAST = {
  "integrated_gradients": {"steps": 2, "chunk_size": 2},
  "smoothgrad": {"samples": 2, "chunk_size": 2},
  "occlusion": {"patch": 4, "stride": 4},
  "rise": {"num_masks": 4, "chunk_size": 4},
  "meaningful_perturbation": {"steps": 2},
  "optimized_mask": {"steps": 2},
  "var": {"steps": 2},
}


@pytest.fixture(scope="module")
def cnn():
  model = models.SmallCNN(num_classes=K, widths=(4, 4, 4, 4, 4))
  variables = jax.jit(lambda k: models.init_model(model, k, (1, 8, 8, 1)))(jax.random.key(0))
  apply_fn, params = models.from_linen(model, variables)
  x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
  return apply_fn, params, x


@pytest.mark.parametrize("name", A.method_names())
def test_bad_targets_and_non_finite_inputs_are_refused_eagerly_and_nan_under_jit(cnn, name):
  apply_fn, params, x = cnn
  fn = A.get_method(name, **FAST.get(name, {}))
  keys = jax.random.split(jax.random.key(3), 2)
  inf = x.at[1, 2, 5, 0].set(jnp.inf)
  nan = x.at[1, 6, 1, 0].set(jnp.nan)
  for bad in (K, -1):
    with pytest.raises(ValueError, match=rf"^target must lie in \[0, 10\) .*; got \[{bad}\]$"):
      fn(apply_fn, params, x, jnp.array([1, bad]), key=keys)
  with pytest.raises(ValueError, match=r"^x contains inf \(images \[1\]\)"):
    fn(apply_fn, params, inf, jnp.array([1, 3]), key=keys)
  with pytest.raises(ValueError, match=r"^x contains NaN \(images \[1\]\)"):
    fn(apply_fn, params, nan, jnp.array([1, 3]), key=keys)
  # Under jit (one compilation for every call below), one mechanism for all
  # four: the offending image's map is NaN, the other image's map unchanged.
  f = jax.jit(lambda x, t: fn(apply_fn, params, x, t, key=keys))
  good = np.asarray(f(x, jnp.array([1, 3])))
  assert np.isfinite(good).all()
  for what, xx, t in [
    (f"target {K}", x, [1, K]),
    ("target -1", x, [1, -1]),
    ("an infinite input", inf, [1, 3]),
    ("a NaN input", nan, [1, 3]),
  ]:
    maps = np.asarray(f(xx, jnp.array(t)))
    assert np.isnan(maps[1]).all(), f"{name}: {what} under jit gave a map that is not NaN"
    np.testing.assert_allclose(maps[0], good[0], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {what}")


def test_integrated_gradients_of_an_inf_image_called_directly(cnn):
  """The finding: an image with inf gave non-finite IG maps, silently."""
  apply_fn, params, x = cnn
  inf = x.at[0, 0, 0, 0].set(-jnp.inf)
  with pytest.raises(ValueError, match=r"x contains inf \(images \[0\]\)"):
    A.integrated_gradients(apply_fn, params, inf, jnp.array([0, 0]), steps=2)


def test_all_classes_under_jit_poisons_only_images_that_are_not_finite(cnn):
  apply_fn, params, x = cnn
  every = A.all_classes(A.gradient)
  f = jax.jit(lambda v: every(apply_fn, params, v))
  maps = np.asarray(f(x.at[0, 1, 1, 0].set(jnp.inf)))
  assert maps.shape == (K, 2, 8, 8, 1)
  assert np.isnan(maps[:, 0]).all() and np.isfinite(maps[:, 1]).all()
  np.testing.assert_allclose(maps[:, 1], np.asarray(f(x))[:, 1], rtol=1e-6)


def test_a_target_traced_alone_is_still_checked(cnn):
  apply_fn, params, x = cnn
  f = jax.jit(lambda t: A.gradient(apply_fn, params, x, t))
  maps = np.asarray(f(jnp.array([K, 0])))
  assert np.isnan(maps[0]).all() and np.isfinite(maps[1]).all()


@pytest.mark.parametrize("fraction", [1.5, -0.1, float("nan")])
def test_keep_top_refuses_a_fraction_outside_0_1_instead_of_clamping(fraction):
  scores = jnp.arange(8.0).reshape(2, 2, 2)
  with pytest.raises(ValueError, match=r"^fraction must lie in \[0, 1\]; got \[(1.5|-0.1|nan)\]$"):
    A.keep_top(scores, fraction)
  with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\]; got \[1.5\]"):
    A.keep_top(scores, jnp.array([0.5, 1.5]))
  kept = np.asarray(jax.jit(A.keep_top)(scores, jnp.array([0.5, fraction])))
  np.testing.assert_array_equal(kept[0], [[0.0, 0.0], [1.0, 1.0]])
  assert np.isnan(kept[1]).all()


def test_keep_top_refuses_maps_of_the_wrong_rank():
  with pytest.raises(
    ValueError, match=r"^scores must be maps of shape \[B, H, W\] .*got shape \(2, 4, 4, 3\)$"
  ):
    A.keep_top(jnp.zeros((2, 4, 4, 3)), 0.5)
  with pytest.raises(ValueError, match=r"fraction must be a number or one per map, shape \[B\]"):
    A.keep_top(jnp.zeros((2, 4, 4)), jnp.array([0.5, 0.5, 0.5]))
  np.testing.assert_array_equal(
    A.keep_top(jnp.array([[[3.0, 1.0], [2.0, 0.0]]]), 1.0), np.ones((1, 2, 2))
  )
