"""jaxsal's attribution methods against Captum, on the same weights.

A random ``SmallCNN`` and its PyTorch twin (``_torch_twin.py``) compute the
same logits; each jaxsal method is then compared with Captum's counterpart on
the same images, targets and hyperparameters. ``assert_close`` checks
``max|ours - theirs| <= 1e-4 * max|theirs|``.

Known differences, asserted as such rather than hidden by a tolerance:

* ``riemann_trapezoid``: Captum's step sizes are ``1/n`` with the end points
  halved, summing to ``(n-1)/n``; jaxsal's are ``1/(n-1)`` (the trapezoid
  rule on ``n`` points spaced ``1/(n-1)``), summing to 1. Captum's IG is
  jaxsal's times ``(n-1)/n`` exactly.
* occlusion when ``(size - patch) % stride != 0``: Captum adds a last window
  clipped by the border. jaxsal did not (it left the border at 0); this test
  found it, and jaxsal now does the same.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum = pytest.importorskip("captum")

import jax
import jax.numpy as jnp
from _torch_twin import to_nhwc, to_torch, twin_of
from captum.attr import (
  Deconvolution,
  GuidedBackprop,
  GuidedGradCam,
  InputXGradient,
  IntegratedGradients,
  LayerAttribution,
  LayerGradCam,
  NoiseTunnel,
  Occlusion,
  Saliency,
)
from captum.attr._utils.approximation_methods import approximation_parameters

from jaxsal import attribution as A
from jaxsal import models
from jaxsal.attribution._smoothgrad import MODES, noise_scale, sample_noise

# Captum announces its ReLU hooks and auto-enabled input gradients on every call.
pytestmark = [
  pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning"),
  pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require:UserWarning"),
]

B, H, W, C, K = 3, 32, 32, 3, 10
RTOL = 1e-4
STEPS = 16


def assert_close(ours, theirs, rtol=RTOL, what=""):
  """``max|ours - theirs| <= rtol * max|theirs|``; prints both arrays on failure."""
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
  scale = np.abs(theirs).max()
  err = np.abs(ours - theirs).max()
  assert scale > 0, f"{what}: the reference is all zeros, the comparison would be vacuous"
  if not err <= rtol * scale:
    with np.printoptions(precision=6, threshold=60, edgeitems=4):
      print(f"{what}: ours\n{ours}\ntheirs\n{theirs}")
  assert err <= rtol * scale, (
    f"{what}: max|ours - theirs| = {err:.3g} > {rtol:g} * max|theirs| = {rtol * scale:.3g}"
  )


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
  # The models are tiny; on a 2-core machine whose other core is busy (JAX's
  # own threads, a parallel job) PyTorch's thread pool only adds waiting.
  n = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(n)


@pytest.fixture(scope="module")
def setup():
  model = models.SmallCNN(num_classes=K, widths=(8, 8, 16, 16, 16))
  variables = models.init_model(model, jax.random.key(0), (1, H, W, C))
  apply_fn, params = models.from_linen(model, variables)
  twin = twin_of(model, variables)
  rng = np.random.default_rng(0)
  x = rng.random((B, H, W, C), dtype=np.float32)
  target = np.array([3, 0, 7])
  return apply_fn, params, twin, jnp.asarray(x), jnp.asarray(target), x, torch.from_numpy(target)


def twin_target_logits(twin, x_nhwc, target):
  with torch.no_grad():
    out = twin(to_torch(x_nhwc))
  return out.gather(1, target[:, None])[:, 0].numpy()


def test_twin_logits_equal_jaxsal_logits(setup):
  apply_fn, params, twin, xj, _, x, _ = setup
  ours = np.asarray(apply_fn(params, xj))
  with torch.no_grad():
    theirs = twin(to_torch(x)).numpy()
  assert theirs.shape == (B, K)
  assert np.abs(theirs).max() > 1e-3
  assert_close(ours, theirs, rtol=1e-5, what="logits")
  # Odd sizes exercise the asymmetric 'SAME' padding differently.
  x2 = np.random.default_rng(1).random((2, 21, 18, C), dtype=np.float32)
  with torch.no_grad():
    theirs2 = twin(to_torch(x2)).numpy()
  assert_close(
    np.asarray(apply_fn(params, jnp.asarray(x2))), theirs2, rtol=1e-5, what="logits 21x18"
  )


def test_gradient_matches_saliency(setup):
  apply_fn, params, twin, xj, tj, x, tt = setup
  theirs = to_nhwc(Saliency(twin).attribute(to_torch(x, requires_grad=True), target=tt, abs=False))
  assert_close(A.gradient(apply_fn, params, xj, tj), theirs, what="gradient")


def test_gradient_x_input_matches_input_x_gradient(setup):
  apply_fn, params, twin, xj, tj, x, tt = setup
  theirs = to_nhwc(InputXGradient(twin).attribute(to_torch(x, requires_grad=True), target=tt))
  assert_close(A.gradient_x_input(apply_fn, params, xj, tj), theirs, what="gradient_x_input")


def test_rule_names_are_captums():
  from captum.attr._utils.approximation_methods import SUPPORTED_METHODS

  assert set(A.RULES) == set(SUPPORTED_METHODS)


@pytest.mark.parametrize("rule", A.RULES)
def test_integration_points_match_captum(rule):
  step_sizes, alphas = approximation_parameters(rule)
  ours_a, ours_w = A.integration_points(STEPS, rule)
  np.testing.assert_allclose(ours_a, alphas(STEPS), atol=1e-6)
  if rule == "riemann_trapezoid":
    # Captum's trapezoid weights are 1/n (ends halved): they sum to (n-1)/n,
    # not 1; the trapezoid rule on n points spaced 1/(n-1) needs 1/(n-1).
    np.testing.assert_allclose(np.sum(step_sizes(STEPS)), (STEPS - 1) / STEPS, rtol=1e-12)
    np.testing.assert_allclose(
      ours_w, np.asarray(step_sizes(STEPS)) * STEPS / (STEPS - 1), rtol=1e-12
    )
  else:
    np.testing.assert_allclose(ours_w, step_sizes(STEPS), rtol=1e-6)
  np.testing.assert_allclose(ours_w.sum(), 1.0, rtol=1e-12)


# Every rule with the zeros baseline; the constant baseline (which enters
# every rule the same way) with the default rule and with the one whose
# points include both end points. Each jaxsal call compiles anew (~1 s).
@pytest.mark.parametrize(
  "rule,baseline",
  [(rule, 0.0) for rule in A.RULES] + [("gausslegendre", 0.4), ("riemann_trapezoid", 0.4)],
)
def test_integrated_gradients_match_captum(setup, rule, baseline):
  apply_fn, params, twin, xj, tj, x, tt = setup
  ours, ours_delta = A.integrated_gradients(
    apply_fn,
    params,
    xj,
    tj,
    steps=STEPS,
    rule=rule,
    baseline="zeros" if baseline == 0 else baseline,
    return_delta=True,
  )
  theirs, their_delta = IntegratedGradients(twin).attribute(
    to_torch(x),
    baselines=baseline,
    target=tt,
    n_steps=STEPS,
    method=rule,
    return_convergence_delta=True,
  )
  theirs, their_delta = to_nhwc(theirs), their_delta.numpy()
  gap = twin_target_logits(twin, x, tt) - twin_target_logits(twin, np.full_like(x, baseline), tt)
  assert np.abs(gap).min() > 1e-3  # the completeness check is not vacuous
  # Captum's sign convention is ours: delta = sum(attributions) - (F(x) - F(baseline)).
  np.testing.assert_allclose(
    their_delta, theirs.reshape(B, -1).sum(1) - gap, atol=1e-5 * np.abs(gap).max()
  )
  if rule == "riemann_trapezoid":
    # Captum's trapezoid step sizes sum to (n-1)/n (see
    # test_integration_points_match_captum); ours sum to 1. Same points, so
    # the attributions differ by exactly that factor.
    theirs = theirs * STEPS / (STEPS - 1)
  assert_close(ours, theirs, what=f"integrated_gradients[{rule}, baseline={baseline}]")
  ref_delta = theirs.reshape(B, -1).sum(1) - gap
  np.testing.assert_allclose(
    np.asarray(ours_delta), ref_delta, atol=1e-4 * np.abs(np.asarray(apply_fn(params, xj))).max()
  )
  if rule != "riemann_trapezoid":
    np.testing.assert_allclose(
      np.asarray(ours_delta),
      their_delta,
      atol=1e-4 * np.abs(np.asarray(apply_fn(params, xj))).max(),
    )


@pytest.fixture
def our_noise_for_captum(monkeypatch):
  """Makes Captum's NoiseTunnel add jaxsal's noise draws.

  ``NoiseTunnel._add_noise_to_input`` draws ``torch.normal(0, std)`` with
  ``std`` of shape ``[B * m, C, H, W]`` for a chunk of ``m`` samples and adds
  it to ``input.repeat_interleave(m, 0)``: row ``b * m + j`` is sample ``j`` of
  image ``b``, and chunks come in sample order. ``torch.normal`` (looked up
  on the ``torch`` module at call time) is replaced by a function that returns
  the next ``m`` of jaxsal's draws in that layout; Captum is then called with
  ``stdevs=1.0`` (the draws already carry jaxsal's per-image scale).
  """
  state = {}

  def install(noise_nhwc):  # [S, B, H, W, C]
    noise = np.ascontiguousarray(noise_nhwc.transpose(1, 0, 4, 2, 3))  # [B, S, C, H, W]
    state.update(noise=noise, next=0, calls=0)

    def fake_normal(mean, std, *args, **kwargs):
      assert not args and not kwargs and mean == 0 and torch.all(std == 1.0)
      b, s = noise.shape[:2]
      assert std.shape[0] % b == 0 and tuple(std.shape[1:]) == noise.shape[2:]
      m = std.shape[0] // b
      start = state["next"]
      assert start + m <= s, "Captum drew more samples than jaxsal"
      state["next"] += m
      state["calls"] += 1
      return torch.from_numpy(
        noise[:, start : start + m].reshape((b * m,) + noise.shape[2:]).copy()
      )

    monkeypatch.setattr(torch, "normal", fake_normal)

  return install, state


@pytest.mark.parametrize("mode", MODES)
def test_smoothgrad_matches_noise_tunnel_with_the_same_noise(setup, our_noise_for_captum, mode):
  apply_fn, params, twin, xj, tj, x, tt = setup
  samples, sigma, key = 6, 0.15, jax.random.key(7)
  ours = A.smoothgrad(A.gradient, samples=samples, sigma=sigma, mode=mode, chunk_size=4)(
    apply_fn, params, xj, tj, key=key
  )
  scale = noise_scale(xj, sigma)
  noise = np.stack([np.asarray(sample_noise(key, xj, i, scale)) for i in range(samples)])
  flat = x.reshape(B, -1)  # sigma is relative to each image's own range
  np.testing.assert_allclose(
    noise.std(axis=(0, 2, 3, 4)), sigma * (flat.max(1) - flat.min(1)), rtol=0.05
  )
  install, state = our_noise_for_captum
  install(noise)
  # nt_samples_batch_size=4 with 6 samples: one chunk of 4, then Captum's
  # remainder path with 2, so the chunk order is exercised too.
  theirs = to_nhwc(
    NoiseTunnel(Saliency(twin)).attribute(
      to_torch(x),
      nt_type=mode,
      nt_samples=samples,
      nt_samples_batch_size=4,
      stdevs=1.0,
      target=tt,
      abs=False,
    )
  )
  assert state["calls"] == 2 and state["next"] == samples
  assert_close(ours, theirs, what=f"smoothgrad[{mode}]")
  # Captum's reduction, from its own per-sample saliency maps on the same noisy inputs.
  per_sample = np.stack(
    [
      to_nhwc(
        Saliency(twin).attribute(to_torch(x + noise[i], requires_grad=True), target=tt, abs=False)
      )
      for i in range(samples)
    ]
  )
  expected = {
    "smoothgrad": per_sample.mean(0),
    "smoothgrad_sq": (per_sample**2).mean(0),
    "vargrad": per_sample.var(0),
  }[mode]  # population variance, E[a^2] - E[a]^2
  assert_close(theirs, expected, what=f"captum {mode} definition")


# Both cases (and the border case below) have 7 x 7 patch positions, so
# jaxsal's lax.map over the masks compiles once.
@pytest.mark.parametrize(
  "patch,stride,baseline",
  [
    (8, 4, 0.0),  # overlapping square patches, zero baseline
    ((14, 8), (3, 4), 0.5),  # rectangular, overlapping, non-zero baseline
  ],
)
def test_occlusion_matches_captum(setup, patch, stride, baseline):
  apply_fn, params, twin, xj, tj, x, tt = setup
  ph, pw = (patch, patch) if isinstance(patch, int) else patch
  sh, sw = (stride, stride) if isinstance(stride, int) else stride
  assert (H - ph) % sh == 0 and (W - pw) % sw == 0  # see the border test below
  ours = A.occlusion(apply_fn, params, xj, tj, patch=patch, stride=stride, baseline=baseline)
  theirs = to_nhwc(
    Occlusion(twin).attribute(
      to_torch(x),
      sliding_window_shapes=(C, ph, pw),
      strides=(C, sh, sw),
      baselines=baseline,
      target=tt,
      perturbations_per_eval=64,
    )
  )
  assert_close(ours, theirs, what=f"occlusion[{patch}, {stride}, {baseline}]")


@pytest.fixture(scope="module")
def occlusion_6_4(setup):
  """Patch 6, stride 4 on 32 x 32: (32 - 6) % 4 == 2, the stride does not divide."""
  apply_fn, params, twin, xj, tj, x, tt = setup
  ours = A.occlusion(apply_fn, params, xj, tj, patch=6, stride=4)
  theirs = to_nhwc(
    Occlusion(twin).attribute(
      to_torch(x),
      sliding_window_shapes=(C, 6, 6),
      strides=(C, 4, 4),
      target=tt,
      perturbations_per_eval=64,
    )
  )
  return np.asarray(ours), theirs


def test_occlusion_matches_captum_when_the_stride_does_not_divide(occlusion_6_4):
  # Windows at 0, 4, ..., 24 and one more at 28, clipped by the border (both
  # libraries), so the last rows and columns are covered too.
  ours, theirs = occlusion_6_4
  assert np.abs(ours[:, 30:, 30:]).max() > 0
  assert_close(ours, theirs, what="occlusion with a non-dividing stride")


@pytest.mark.parametrize(
  "ours_fn,theirs_cls",
  [(A.guided_backprop, GuidedBackprop), (A.deconvnet, Deconvolution)],
  ids=["guided_backprop", "deconvnet"],
)
def test_modified_relu_backward_passes_match_captum(setup, ours_fn, theirs_cls):
  apply_fn, params, twin, xj, tj, x, tt = setup
  ours = ours_fn(apply_fn, params, xj, tj)
  theirs = to_nhwc(theirs_cls(twin).attribute(to_torch(x), target=tt))
  assert_close(ours, theirs, what=ours_fn.__name__)


@pytest.mark.parametrize("layer", ["l2", "l4"])
@pytest.mark.parametrize("relu", [False, True])
def test_gradcam_matches_layer_gradcam_upsampled_bilinearly(setup, layer, relu):
  apply_fn, params, twin, xj, tj, x, tt = setup
  ours = A.gradcam(apply_fn, params, xj, tj, layer=layer, relu=relu)
  coarse = LayerGradCam(twin, twin.tap_layers[layer]).attribute(
    to_torch(x), target=tt, relu_attributions=relu
  )
  theirs = LayerAttribution.interpolate(coarse, (H, W), interpolate_mode="bilinear")
  assert_close(np.asarray(ours)[..., 0], theirs.detach().numpy()[:, 0], what=f"gradcam {layer}")
  assert np.ptp(np.asarray(ours)[..., 1] - np.asarray(ours)[..., 0]) == 0


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_guided_gradcam_matches_captum(setup, upsample):
  apply_fn, params, twin, xj, tj, x, tt = setup
  ours = A.guided_gradcam(apply_fn, params, xj, tj, layer="l2", upsample=upsample)
  theirs = to_nhwc(
    GuidedGradCam(twin, twin.tap_layers["l2"]).attribute(
      to_torch(x), target=tt, interpolate_mode=upsample
    )
  )
  assert_close(ours, theirs, what=f"guided gradcam ({upsample})")
