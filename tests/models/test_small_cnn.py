"""SmallCNN: layout, taps and gradients against hand-computed known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal.models import SmallCNN, apply_with_taps, init_model, tap_names

H = W = 64


@pytest.fixture(scope="module")
def setup():
  model = SmallCNN(num_classes=10)
  # Jitted: eager init compiles every initializer op by op (slow in tests).
  variables = jax.jit(lambda key: init_model(model, key, (2, H, W, 1)))(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (2, H, W, 1), jnp.float32)
  return model, variables, x


def test_variables_are_params_only(setup):
  _, variables, _ = setup
  assert sorted(variables) == ["params"]
  assert sorted(variables["params"]) == ["conv0", "conv1", "conv2", "conv3", "conv4", "head"]
  assert variables["params"]["conv0"]["kernel"].shape == (3, 3, 1, 16)
  assert variables["params"]["head"]["kernel"].shape == (128, 10)


def test_tap_shapes_at_64(setup):
  model, variables, x = setup
  logits, taps = apply_with_taps(model, variables, x)
  assert tap_names(model) == ["l0", "l1", "l2", "l3", "l4"]
  assert logits.shape == (2, 10)
  # 1/2, 1/4, 1/8, 1/16, 1/16 of 64, with widths (16, 32, 64, 128, 128).
  expected = {
    "l0": (2, 32, 32, 16),
    "l1": (2, 16, 16, 32),
    "l2": (2, 8, 8, 64),
    "l3": (2, 4, 4, 128),
    "l4": (2, 4, 4, 128),
  }
  assert {k: v.shape for k, v in taps.items()} == expected


def test_l0_equals_hand_computation(setup):
  model, variables, x = setup
  p = variables["params"]["conv0"]
  conv = (
    jax.lax.conv_general_dilated(
      x,
      p["kernel"],
      window_strides=(2, 2),
      padding="SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST,
    )
    + p["bias"]
  )
  expected = np.maximum(np.asarray(conv), 0.0)
  _, taps = apply_with_taps(model, variables, x, taps=["l0"])
  assert list(taps) == ["l0"]
  np.testing.assert_allclose(taps["l0"], expected, rtol=1e-5, atol=1e-5)


def test_logits_are_dense_of_mean_l4(setup):
  model, variables, x = setup
  logits, taps = apply_with_taps(model, variables, x, taps=["l4"])
  head = variables["params"]["head"]
  expected = np.asarray(taps["l4"]).mean(axis=(1, 2)) @ np.asarray(head["kernel"]) + head["bias"]
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c", [0, 7])
def test_gradient_wrt_l4_is_analytic(setup, c):
  model, variables, x = setup
  _, taps = apply_with_taps(model, variables, x, taps=["l4"])

  def logit_c(delta):
    logits, _ = apply_with_taps(model, variables, x, taps=[], perturbations={"l4": delta})
    return logits[:, c].sum()

  grad = jax.grad(logit_c)(jnp.zeros_like(taps["l4"]))
  # logit_c = mean_{ij}(l4) . W[:, c] + b_c  =>  d logit_c / d l4[b, i, j, :] = W[:, c] / (h w).
  h, w = taps["l4"].shape[1:3]
  kernel = np.asarray(variables["params"]["head"]["kernel"])
  expected = np.broadcast_to(kernel[:, c] / (h * w), taps["l4"].shape)
  np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)


def test_gradient_wrt_l4_via_flax_perturbations_collection(setup):
  """The raw Flax route (variables['perturbations']) gives the same gradient."""
  model, variables, x = setup
  _, taps = apply_with_taps(model, variables, x)
  zeros = {k: jnp.zeros_like(v) for k, v in taps.items()}

  def logit_3(perturbations):
    return model.apply({**variables, "perturbations": perturbations}, x)[:, 3].sum()

  grads = jax.grad(logit_3)(zeros)
  kernel = np.asarray(variables["params"]["head"]["kernel"])
  np.testing.assert_allclose(
    grads["l4"], np.broadcast_to(kernel[:, 3] / 16, grads["l4"].shape), rtol=1e-6, atol=1e-7
  )


def test_train_flag_is_ignored(setup):
  model, variables, x = setup
  np.testing.assert_array_equal(model.apply(variables, x, train=True), model.apply(variables, x))


def test_uses_jax_nn_relu(setup, monkeypatch):
  """Guided backprop rewrites jax.nn.relu, so every activation must go through it."""
  model, variables, x = setup
  calls = []
  relu = jax.nn.relu

  def counting_relu(v):
    calls.append(v.shape)
    return relu(v)

  monkeypatch.setattr(jax.nn, "relu", counting_relu)
  jax.eval_shape(lambda v: model.apply(v, x), variables)
  assert calls == [(2, 32, 32, 16), (2, 16, 16, 32), (2, 8, 8, 64), (2, 4, 4, 128), (2, 4, 4, 128)]
