"""Methods by name (``get_method``): the same maps as the direct calls, and clear refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A
from jaxsal import models
from jaxsal.configs import demo_digits
from jaxsal.experiments import _common


@pytest.fixture(scope="module")
def cnn():
  model = models.SmallCNN(num_classes=10)
  variables = jax.jit(lambda k: models.init_model(model, k, (1, 16, 16, 1)))(jax.random.key(0))
  apply_fn, params = models.from_linen(model, variables)
  x = jax.random.uniform(jax.random.key(1), (3, 16, 16, 1))
  return apply_fn, params, x, jnp.array([2, 7, 0])


# The per-image optimisations run 20 steps here, not their default 300, to keep the suite fast.
FEWER_STEPS = {"meaningful_perturbation": {"steps": 20}, "optimized_mask": {"steps": 20}}


def _direct(name, apply_fn, params, x, t, keys):
  """Each method called by hand with the registry's documented defaults (FEWER_STEPS aside)."""
  side = x.shape[1]
  calls = {
    "gradient": lambda: A.gradient(apply_fn, params, x, t),
    "gradient_x_input": lambda: A.gradient_x_input(apply_fn, params, x, t),
    "integrated_gradients": lambda: A.integrated_gradients(apply_fn, params, x, t, steps=32),
    "smoothgrad": lambda: A.smoothgrad(A.gradient, samples=16, sigma=0.15)(
      apply_fn, params, x, t, key=keys
    ),
    "guided_backprop": lambda: A.guided_backprop(apply_fn, params, x, t),
    "deconvnet": lambda: A.deconvnet(apply_fn, params, x, t),
    "gradcam": lambda: A.gradcam(apply_fn, params, x, t, layer="l4"),
    "guided_gradcam": lambda: A.guided_gradcam(apply_fn, params, x, t, layer="l4"),
    "occlusion": lambda: A.occlusion(apply_fn, params, x, t, patch=side // 8, stride=side // 16),
    "rise": lambda: A.rise(apply_fn, params, x, t, key=keys[0], num_masks=256),
    "meaningful_perturbation": lambda: A.meaningful_perturbation(
      apply_fn, params, x, t, steps=20, mask_size=side // 8
    ),
    "optimized_mask": lambda: A.optimized_mask(apply_fn, params, x, t, key=keys, steps=20),
    "cgi": lambda: A.cgi(apply_fn, params, x, t),
    "var": lambda: A.var(A.gradient_x_input)(apply_fn, params, x, t),
  }
  return calls[name]()


@pytest.mark.parametrize("name", A.method_names())
def test_each_name_gives_the_direct_calls_maps(cnn, name):
  apply_fn, params, x, t = cnn
  keys = jax.random.split(jax.random.key(3), x.shape[0])
  fn = A.get_method(name, **FEWER_STEPS.get(name, {}))
  got = jax.jit(lambda p, x, t, k: fn(apply_fn, p, x, t, key=k))(params, x, t, keys)
  expected = jax.jit(lambda p, x, t, k: _direct(name, apply_fn, p, x, t, k))(params, x, t, keys)
  assert got.shape == x.shape
  scale = float(jnp.abs(expected).max())
  assert scale > 0, f"{name}'s map is all zero: the comparison would be vacuous"
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)


def test_hyperparameters_reach_the_method(cnn):
  apply_fn, params, x, t = cnn
  got = A.get_method("integrated_gradients", steps=4, rule="riemann_left")(apply_fn, params, x, t)
  expected = A.integrated_gradients(apply_fn, params, x, t, steps=4, rule="riemann_left")
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert not np.allclose(got, A.get_method("integrated_gradients")(apply_fn, params, x, t))
  ig_var = A.get_method("var", method="integrated_gradients", steps=8, tau=0.05)
  np.testing.assert_allclose(
    ig_var(apply_fn, params, x, t),
    A.var(A.integrated_gradients, tau=0.05)(apply_fn, params, x, t, steps=8),
    rtol=1e-6,
  )
  key = jax.random.key(0)
  sg = A.get_method("smoothgrad", method="gradient_x_input", samples=5, mode="vargrad")
  np.testing.assert_allclose(
    sg(apply_fn, params, x, t, key=key),
    A.smoothgrad(A.gradient_x_input, samples=5, mode="vargrad")(apply_fn, params, x, t, key=key),
    rtol=1e-6,
  )


def test_per_image_keys_make_stochastic_maps_batch_independent(cnn):
  apply_fn, params, x, t = cnn
  keys = jax.random.split(jax.random.key(5), x.shape[0])
  for name in ("smoothgrad", "optimized_mask"):
    fn = A.get_method(name, **({"steps": 20} if name == "optimized_mask" else {}))
    whole = fn(apply_fn, params, x, t, key=keys)
    alone = fn(apply_fn, params, x[1:2], t[1:2], key=keys[1:2])
    np.testing.assert_allclose(whole[1:2], alone, rtol=1e-4, atol=1e-6, err_msg=name)


def test_all_classes_of_a_named_method_uses_the_methods_own_class_maps(cnn):
  apply_fn, params, x, _ = cnn
  keys = jax.random.split(jax.random.key(7), x.shape[0])
  every = jax.jit(lambda p, x, k, f: A.all_classes(f)(apply_fn, p, x, key=k), static_argnums=3)
  rise = A.get_method("rise", num_masks=32)
  assert rise.class_maps_hook is not None and A.get_method("cgi").class_maps_hook is not None
  np.testing.assert_allclose(
    every(params, x, keys, rise),
    jax.jit(
      lambda p, x, k: A.all_classes(A.rise)(apply_fn, p, x, key=k, num_masks=32, chunk_size=32)
    )(params, x, keys[0]),
    rtol=1e-6,
  )
  got = every(params, x, keys, A.get_method("cgi", chunk_size=4))
  want = jax.jit(lambda p, x: A.all_classes(A.cgi)(apply_fn, p, x, chunk_size=4))(params, x)
  assert got.shape == (10,) + x.shape and float(jnp.abs(want).max()) > 0
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_the_demo_gallery_shows_every_method():
  gallery = _common.get_methods(demo_digits.get_config().gallery.methods, special=("masker",))
  assert tuple(gallery) == (*A.method_names(), "masker")
  assert A.method_defaults("optimized_mask") == {"steps": 300}
  assert A.method_defaults("meaningful_perturbation") == {"steps": 300, "mask_size": None}
  for name in A.method_names():
    assert A.method_description(name)
    assert set(A.method_defaults(name)) <= set(A.method_hparams(name))
  assert [n for n in A.method_names() if A.needs_key(n)] == ["smoothgrad", "rise", "optimized_mask"]


def test_bad_names_and_hyperparameters_are_named():
  with pytest.raises(ValueError, match=r"unknown method 'lime'; known methods: cgi, deconvnet"):
    A.get_method("lime")
  with pytest.raises(
    ValueError,
    match=r"'integrated_gradients' takes no hyperparameter 'stepz'; "
    r"it takes: baseline, blur_sigma, chunk_size, rule, steps",
  ):
    A.get_method("integrated_gradients", stepz=3)
  with pytest.raises(ValueError, match="takes no hyperparameter 'layer'; it takes: none"):
    A.get_method("gradient", layer="l4")
  with pytest.raises(ValueError, match="smoothgrad's method must be one of gradient, "):
    A.get_method("smoothgrad", method="rise")
  with pytest.raises(ValueError, match="var's method must be one of gradient, gradient_x_input"):
    A.get_method("var", method="occlusion")
  with pytest.raises(ValueError, match="unknown method 'nope'"):
    A.method_description("nope")
