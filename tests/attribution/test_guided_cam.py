"""Guided backpropagation, deconvnet, Grad-CAM and guided Grad-CAM: known answers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A
from jaxsal import models
from jaxsal.attribution._guided import _DECONV_RELU, _GUIDED_RELU

B, H, W, C, HID, K = 3, 4, 4, 2, 6, 5


@pytest.fixture(scope="module")
def mlp():
  """``z = relu(x W1) V``: every ReLU backward pass has a closed form."""
  rng = np.random.default_rng(0)
  params = {
    "w1": jnp.asarray(rng.standard_normal((H * W * C, HID)), jnp.float32),
    "v": jnp.asarray(rng.standard_normal((HID, K)), jnp.float32),
  }

  def apply_fn(p, x):
    return jax.nn.relu(x.reshape(x.shape[0], -1) @ p["w1"]) @ p["v"]

  x = jnp.asarray(rng.standard_normal((B, H, W, C)), jnp.float32)
  return apply_fn, params, x, jnp.array([0, 2, 4])


def _closed_form(params, x, target, kind):
  w1, v = np.asarray(params["w1"]), np.asarray(params["v"])
  pre = np.asarray(x).reshape(B, -1) @ w1
  out = []
  for b, t in enumerate(np.asarray(target)):
    g = v[:, t]
    if kind == "gradient":
      g = g * (pre[b] > 0)
    elif kind == "guided":
      g = np.maximum(g, 0) * (pre[b] > 0)
    else:
      g = np.maximum(g, 0)
    out.append((w1 @ g).reshape(H, W, C))
  return np.stack(out)


def test_closed_forms_on_a_one_hidden_layer_net(mlp):
  apply_fn, params, x, t = mlp
  np.testing.assert_allclose(
    A.gradient(apply_fn, params, x, t), _closed_form(params, x, t, "gradient"), rtol=1e-5, atol=1e-5
  )
  gbp = A.guided_backprop(apply_fn, params, x, t)
  np.testing.assert_allclose(gbp, _closed_form(params, x, t, "guided"), rtol=1e-5, atol=1e-5)
  dec = A.deconvnet(apply_fn, params, x, t)
  np.testing.assert_allclose(dec, _closed_form(params, x, t, "deconv"), rtol=1e-5, atol=1e-5)
  # The three really differ on this net (a test that could not fail otherwise).
  assert float(jnp.abs(gbp - dec).max()) > 1e-2
  assert float(jnp.abs(gbp - A.gradient(apply_fn, params, x, t)).max()) > 1e-2


def _model(relu):
  """A net with ReLUs under jit, remat, scan, cond and while; ``relu`` is its activation."""

  def apply_fn(w, x):
    h = x.reshape(x.shape[0], -1)[:, :4]
    h = jax.jit(lambda a: relu(a @ w))(h)
    h = jax.checkpoint(lambda a: relu(a @ w - 0.1))(h)
    h, _ = jax.lax.scan(lambda c, _: (relu(c @ w), None), h, None, length=2)
    h = jax.lax.cond(h.sum() > -1e9, lambda a: relu(a @ w) * 2, lambda a: a, h)
    h = jax.lax.fori_loop(0, 2, lambda i, a: relu(a @ w + 0.05), h)
    return h

  return apply_fn


@pytest.mark.parametrize(
  "method,relu", [(A.guided_backprop, _GUIDED_RELU), (A.deconvnet, _DECONV_RELU)]
)
def test_rewrite_reaches_relus_inside_jit_remat_scan_cond_and_while(method, relu):
  w = jax.random.normal(jax.random.key(2), (4, 4))
  x = jax.random.normal(jax.random.key(3), (3, 2, 2, 1))
  t = jnp.array([0, 1, 3])
  ours = method(_model(jax.nn.relu), w, x, t)
  expected = A.gradient(_model(relu), w, x, t)  # the same net, written with the modified ReLU
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(ours - A.gradient(_model(jax.nn.relu), w, x, t)).max()) > 1e-3


def test_forward_values_are_unchanged_by_the_rewrite(mlp):
  from jaxsal.attribution._relu_rewrite import replace_relu

  apply_fn, params, x, _ = mlp
  np.testing.assert_array_equal(
    replace_relu(apply_fn, _GUIDED_RELU)(params, x), apply_fn(params, x)
  )


def test_nnx_and_equinox_models_are_rewritten_too(mlp):
  import equinox as eqx
  from flax import nnx

  _, params, x, t = mlp
  expected = _closed_form(params, x, t, "guided")

  class Net(nnx.Module):
    def __init__(self):
      self.l1 = nnx.Linear(H * W * C, HID, use_bias=False, rngs=nnx.Rngs(0))
      self.l2 = nnx.Linear(HID, K, use_bias=False, rngs=nnx.Rngs(1))
      self.l1.kernel[...] = params["w1"]
      self.l2.kernel[...] = params["v"]

    def __call__(self, x):
      return self.l2(nnx.relu(self.l1(x.reshape(x.shape[0], -1))))

  apply_fn, state = models.from_nnx(Net())
  np.testing.assert_allclose(
    A.guided_backprop(apply_fn, state, x, t), expected, rtol=1e-5, atol=1e-5
  )

  class EqxNet(eqx.Module):
    w1: jax.Array
    v: jax.Array

    def __call__(self, x):
      return jax.nn.relu(x.reshape(-1) @ self.w1) @ self.v

  apply_fn, p = models.from_equinox(EqxNet(params["w1"], params["v"]))
  np.testing.assert_allclose(A.guided_backprop(apply_fn, p, x, t), expected, rtol=1e-5, atol=1e-5)


def test_a_model_without_jax_nn_relu_is_an_error(mlp):
  _, params, x, t = mlp

  def apply_fn(p, v):
    return jnp.maximum(v.reshape(v.shape[0], -1) @ p["w1"], 0) @ p["v"]

  with pytest.raises(ValueError, match="found no jax.nn.relu"):
    A.guided_backprop(apply_fn, params, x, t)


class CamNet(nn.Module):
  """``z = mean_hw(relu(conv(x))) @ D``: Grad-CAM is CAM, ``relu(A @ D[:, t] / hw)``."""

  TAPS = ("feat",)

  @nn.compact
  def __call__(self, x, train=False):
    a = models.tap(self, "feat", jax.nn.relu(nn.Conv(6, (3, 3), strides=(2, 2))(x)))
    return nn.Dense(K, use_bias=False, name="head")(a.mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def camnet():
  model = CamNet()
  x = jax.random.uniform(jax.random.key(4), (B, 8, 8, 2))
  variables = model.init(jax.random.key(5), x)
  apply_fn, params = models.from_linen(model, variables)
  return model, apply_fn, params, x, jnp.array([1, 0, 4])


def test_gradcam_of_a_gap_network_is_cam(camnet):
  model, apply_fn, params, x, t = camnet
  assert isinstance(apply_fn, models.TappedApplyFn) and apply_fn.taps == ("feat",)
  _, feats = models.apply_with_taps(model, params, x, taps=["feat"])
  a = np.asarray(feats["feat"])  # [B, 4, 4, 6]
  d = np.asarray(params["params"]["head"]["kernel"])  # [6, K]
  cam = np.stack([a[b] @ d[:, tb] / 16 for b, tb in enumerate(np.asarray(t))])  # [B, 4, 4]
  coarse = A._gradcam.gradcam_coarse(apply_fn, params, x, t, relu=False)
  np.testing.assert_allclose(coarse, cam, rtol=1e-5, atol=1e-7)
  nearest = A.gradcam(apply_fn, params, x, t, relu=False, upsample="nearest")
  up = np.repeat(np.repeat(cam, 2, axis=1), 2, axis=2)
  np.testing.assert_allclose(nearest, np.broadcast_to(up[..., None], x.shape), rtol=1e-5, atol=1e-7)
  bilinear = A.gradcam(apply_fn, params, x, t)
  np.testing.assert_allclose(
    np.asarray(bilinear)[..., 0], _bilinear_half_pixel(np.maximum(cam, 0), 2), rtol=1e-5, atol=1e-7
  )


def _bilinear_half_pixel(cam, factor):
  """Bilinear upsampling with half-pixel centres, edge-clamped, written out in numpy."""
  b, h, w = cam.shape

  def weights(n):
    out = np.zeros((n * factor, n))
    for i in range(n * factor):
      s = min(max((i + 0.5) / factor - 0.5, 0), n - 1)
      lo = int(np.floor(s))
      hi = min(lo + 1, n - 1)
      f = s - lo
      out[i, lo] += 1 - f
      out[i, hi] += f
    return out

  return np.einsum("yh,bhw,xw->byx", weights(h), cam, weights(w))


def test_guided_gradcam_is_the_product(camnet):
  _, apply_fn, params, x, t = camnet
  gg = A.guided_gradcam(apply_fn, params, x, t)
  expected = A.guided_backprop(apply_fn, params, x, t) * A.gradcam(apply_fn, params, x, t)
  np.testing.assert_allclose(gg, expected, rtol=1e-5, atol=1e-8)


def test_a_tapped_apply_fn_built_by_hand_gives_the_same_cam(camnet):
  model, apply_fn, params, x, t = camnet
  k = params["params"]["Conv_0"]["kernel"]
  bias = params["params"]["Conv_0"]["bias"]
  d = params["params"]["head"]["kernel"]

  def with_taps(p, v, perturbations):
    a = jax.nn.relu(
      jax.lax.conv_general_dilated(v, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
      + bias
    )
    logits = (a + perturbations.get("feat", 0.0)).mean(axis=(1, 2)) @ d
    return logits, {"feat": a}

  plain = models.TappedApplyFn(lambda p, v: with_taps(p, v, {})[0], with_taps, ("feat",))
  np.testing.assert_allclose(
    A.gradcam(plain, None, x, t), A.gradcam(apply_fn, params, x, t), rtol=1e-5, atol=1e-6
  )


def test_gradcam_on_resnet18_is_batched_and_jits():
  model = models.ResNet18(num_classes=4)
  variables = jax.jit(lambda k: models.init_model(model, k, (1, 32, 32, 3)))(jax.random.key(0))
  apply_fn, params = models.from_linen(model, variables)
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  t = jnp.array([1, 3])
  f = jax.jit(lambda p, v, tt: A.gradcam(apply_fn, p, v, tt, layer="l3"))
  batched = f(params, x, t)
  single = jnp.concatenate([f(params, x[i : i + 1], t[i : i + 1]) for i in range(2)])
  np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)
  assert float(batched.max()) > 0


@pytest.mark.parametrize(
  "call,exc,match",
  [
    (
      lambda f, p, x, t: A.gradcam(f, p, x, t, layer="fc7"),
      ValueError,
      "unknown layer 'fc7'; available taps: feat",
    ),
    (lambda f, p, x, t: A.gradcam(lambda q, v: f(q, v), p, x, t), TypeError, "TappedApplyFn"),
    (
      lambda f, p, x, t: A.gradcam(f, p, x, t, upsample="cubic"),
      ValueError,
      "unknown upsample 'cubic'",
    ),
    (
      lambda f, p, x, t: A.guided_gradcam(f, p, x, t[:2]),
      ValueError,
      r"target must have shape \[B\] = \[3\]",
    ),
  ],
)
def test_bad_input(camnet, call, exc, match):
  _, apply_fn, params, x, t = camnet
  with pytest.raises(exc, match=match):
    call(apply_fn, params, x, t)


VMAPPED = [
  (A.gradient, {}),
  (A.gradient_x_input, {}),
  (A.integrated_gradients, {"steps": 4, "chunk_size": 2}),
  (A.smoothgrad(A.gradient, samples=3), {"key": jax.random.key(0)}),
  (A.guided_backprop, {}),
  (A.deconvnet, {}),
  (A.gradcam, {}),
  (A.guided_gradcam, {}),
  (A.occlusion, {"patch": 4, "stride": 4}),
  (A.rise, {"key": jax.random.key(1), "num_masks": 6, "grid_size": 2}),
  (A.meaningful_perturbation, {"steps": 2, "mask_size": 4}),
]


@pytest.mark.parametrize("method,kw", VMAPPED, ids=[m.__name__ for m, _ in VMAPPED])
def test_vmap_over_stacked_parameter_trees_equals_one_call_per_tree(camnet, method, kw):
  """The shape the sanity checks use: one vmapped call explains every randomised model."""
  _, apply_fn, params, x, t = camnet
  stacked = jax.tree.map(lambda a: jnp.stack([a, -0.5 * a]), params)
  out = jax.jit(jax.vmap(lambda p: method(apply_fn, p, x, t, **kw)))(stacked)
  for i in range(2):
    one = method(apply_fn, jax.tree.map(lambda a: a[i], stacked), x, t, **kw)
    np.testing.assert_allclose(out[i], one, rtol=1e-4, atol=1e-6)
  assert not np.allclose(out[0], out[1])
