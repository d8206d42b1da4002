"""Gradient, gradient x input and integrated gradients against known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A
from jaxsal import models

B, H, W, C, K = 3, 4, 4, 2, 5


@pytest.fixture(scope="module")
def linear():
  rng = np.random.default_rng(0)
  params = {
    "w": jnp.asarray(rng.standard_normal((H * W * C, K)), jnp.float32),
    "b": jnp.asarray(rng.standard_normal(K), jnp.float32),
  }

  def apply_fn(p, x):
    return x.reshape(x.shape[0], -1) @ p["w"] + p["b"]

  x = jnp.asarray(rng.standard_normal((B, H, W, C)), jnp.float32)
  target = jnp.array([0, 3, 4])
  wt = np.stack([np.asarray(params["w"])[:, t].reshape(H, W, C) for t in target.tolist()])
  return apply_fn, params, x, target, wt


def test_linear_closed_forms(linear):
  apply_fn, params, x, target, wt = linear
  np.testing.assert_allclose(A.gradient(apply_fn, params, x, target), wt, rtol=1e-6)
  np.testing.assert_allclose(
    A.gradient_x_input(apply_fn, params, x, target), np.asarray(x) * wt, rtol=1e-6
  )


@pytest.mark.parametrize("rule", A.RULES)
def test_linear_ig_is_input_minus_baseline_times_weight_for_every_rule(linear, rule):
  apply_fn, params, x, target, wt = linear
  base = jnp.full((H, W, C), 0.3)
  ig, delta = A.integrated_gradients(
    apply_fn, params, x, target, baseline=base, steps=8, rule=rule, return_delta=True
  )
  np.testing.assert_allclose(ig, (np.asarray(x) - 0.3) * wt, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(delta, 0.0, atol=1e-4)


@pytest.mark.parametrize(
  "rule,expected",
  [
    ("riemann_left", 1.0),
    ("riemann_middle", 1.0),
    ("riemann_trapezoid", 1.0),
    ("gausslegendre", 1.0),
    ("riemann_right", 1.0 - 2 / 16),
  ],
)
def test_ig_paper_sensitivity_example(rule, expected):
  """Sundararajan et al. 2017, Sec. 2: f(x) = 1 - ReLU(1 - x) at x = 2, baseline 0.

  The gradient at x = 2 is 0, yet f(2) - f(0) = 1; IG gives 1. The integrand
  2 * 1[2a < 1] steps at a = 1/2; with 16 points every rule but right-Riemann
  splits its weight exactly there (right-Riemann puts a point at 1/2, where
  JAX's ReLU derivative is 0, and loses 2/16).
  """

  def apply_fn(p, x):
    f = 1.0 - jax.nn.relu(1.0 - x.reshape(x.shape[0]))
    return jnp.stack([f, jnp.zeros_like(f)], axis=1)

  x = jnp.full((1, 1, 1, 1), 2.0)
  t = jnp.array([0])
  assert float(A.gradient(apply_fn, None, x, t).squeeze()) == 0.0
  ig = A.integrated_gradients(apply_fn, None, x, t, steps=16, rule=rule)
  assert float(ig.squeeze()) == pytest.approx(expected, abs=1e-6)


@pytest.fixture(scope="module")
def cnn():
  model = models.SmallCNN(num_classes=10)
  variables = jax.jit(lambda k: models.init_model(model, k, (1, 32, 32, 1)))(jax.random.key(0))
  apply_fn, params = models.from_linen(model, variables)
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 1))
  return apply_fn, params, x, jnp.array([2, 7])


def test_completeness_at_128_steps_on_the_small_cnn(cnn):
  apply_fn, params, x, t = cnn
  ig, delta = A.integrated_gradients(
    apply_fn, params, x, t, steps=128, return_delta=True, chunk_size=32
  )
  logits = apply_fn(params, x)
  gap = np.asarray(logits[jnp.arange(2), t] - apply_fn(params, jnp.zeros_like(x))[jnp.arange(2), t])
  assert np.all(np.abs(gap) > 1e-3)
  assert np.all(np.abs(np.asarray(delta)) < 0.01 * np.abs(gap)), (delta, gap)
  np.testing.assert_allclose(np.asarray(ig).reshape(2, -1).sum(1) - gap, delta, atol=1e-5)


def test_chunks_do_not_change_the_result(cnn):
  apply_fn, params, x, t = cnn
  whole = A.integrated_gradients(apply_fn, params, x, t, steps=40, rule="riemann_middle")
  chunked = A.integrated_gradients(
    apply_fn, params, x, t, steps=40, rule="riemann_middle", chunk_size=16
  )  # 40 = 16 + 16 + 8 (+ 8 zero-weight pads)
  np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-6)


def test_blur_baseline_of_a_constant_image_is_itself():
  x = jnp.full((1, 9, 9, 2), 0.7)
  np.testing.assert_allclose(A.make_baseline(x, "blur", blur_sigma=2.0), x, rtol=1e-6)
  y = jnp.zeros((1, 9, 9, 1)).at[0, 4, 4, 0].set(1.0)
  blurred = A.make_baseline(y, "blur", blur_sigma=1.0)
  assert float(blurred.sum()) == pytest.approx(1.0, rel=1e-5)  # mass kept away from the border
  assert float(blurred[0, 4, 4, 0]) < 1.0


EVERY_METHOD = [
  (A.gradient, {}),
  (A.gradient_x_input, {}),
  (A.integrated_gradients, {"steps": 8, "chunk_size": 4}),
  (A.occlusion, {"patch": 8, "stride": 8, "chunk_size": 5}),
  (A.guided_backprop, {}),
  (A.deconvnet, {}),
  (A.gradcam, {"layer": "l3"}),
  (A.guided_gradcam, {}),
  (A.smoothgrad(A.gradient, samples=4, chunk_size=2), {"key": jax.random.key(0)}),
  (A.rise, {"key": jax.random.key(0), "num_masks": 8, "chunk_size": 4}),
  (A.meaningful_perturbation, {"steps": 3, "mask_size": 8}),
]
METHOD_IDS = [getattr(m, "__name__", "method") for m, _ in EVERY_METHOD]


@pytest.mark.parametrize("method,kw", EVERY_METHOD[:8], ids=METHOD_IDS[:8])
def test_batched_equals_per_example_and_jit_equals_eager(cnn, method, kw):
  apply_fn, params, x, t = cnn
  batched = method(apply_fn, params, x, t, **kw)
  single = jnp.concatenate(
    [method(apply_fn, params, x[i : i + 1], t[i : i + 1], **kw) for i in range(2)]
  )
  # Occlusion is a difference of two logits, so its rounding is that of a logit.
  atol = 1e-6 if method is A.occlusion else 1e-7
  np.testing.assert_allclose(batched, single, rtol=1e-5, atol=atol)
  jitted = jax.jit(lambda p, v, tt: method(apply_fn, p, v, tt, **kw))(params, x, t)
  np.testing.assert_allclose(jitted, batched, rtol=1e-5, atol=atol)


@pytest.mark.parametrize("method,kw", EVERY_METHOD, ids=METHOD_IDS)
def test_no_retrace_on_second_call(cnn, method, kw):
  apply_fn, params, x, t = cnn
  traces = []

  def counted(p, v):
    traces.append(v.shape)
    return apply_fn(p, v)

  def counted_with_taps(p, v, perturbations):
    traces.append(v.shape)
    return apply_fn.with_taps(p, v, perturbations=perturbations)

  model = models.TappedApplyFn(counted, counted_with_taps, apply_fn.taps)
  f = jax.jit(lambda p, v, tt: method(model, p, v, tt, **kw))
  first = f(params, x, t)
  n = len(traces)
  assert n > 0
  second = f(params, x + 1.0, jnp.array([0, 1]))
  assert len(traces) == n
  assert not np.allclose(first, second)  # it really ran again, on the new input


def test_vmap_over_a_stack_of_parameter_trees(cnn):
  apply_fn, params, x, t = cnn
  stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)
  out = jax.vmap(lambda p: A.gradient(apply_fn, p, x, t))(stacked)
  np.testing.assert_allclose(out[0], A.gradient(apply_fn, params, x, t), rtol=1e-5, atol=1e-7)
  doubled = jax.tree.map(lambda a: 2 * a, params)
  np.testing.assert_allclose(out[1], A.gradient(apply_fn, doubled, x, t), rtol=1e-5, atol=1e-6)


def test_all_classes_equals_one_call_per_class(cnn):
  apply_fn, params, x, _ = cnn
  every = A.all_classes(A.gradient_x_input)(apply_fn, params, x)
  assert every.shape == (10,) + x.shape
  for c in (0, 4, 9):
    np.testing.assert_allclose(
      every[c], A.gradient_x_input(apply_fn, params, x, jnp.full(2, c)), rtol=1e-5, atol=1e-7
    )
  chunked = A.all_classes(A.gradient_x_input, chunk_size=3)(apply_fn, params, x)
  np.testing.assert_allclose(chunked, every, rtol=1e-5, atol=1e-7)
  per_image = A.for_classes(A.gradient, jnp.array([[1, 2], [3, 4]]))(apply_fn, params, x)
  np.testing.assert_allclose(
    per_image[1, 0], A.gradient(apply_fn, params, x[:1], jnp.array([3]))[0], rtol=1e-5, atol=1e-7
  )


@pytest.mark.parametrize(
  "call,exc,match",
  [
    (
      lambda f, p, x: A.gradient(f, p, x, jnp.array([0, 10])),
      ValueError,
      r"target must lie in \[0, 10\) .*got \[10\]",
    ),
    (
      lambda f, p, x: A.gradient(f, p, x, jnp.array([0, 1, 2])),
      ValueError,
      r"target must have shape \[B\] = \[2\]",
    ),
    (
      lambda f, p, x: A.gradient(f, p, x, jnp.array([0.0, 1.0])),
      TypeError,
      "target must be an integer",
    ),
    (
      lambda f, p, x: A.integrated_gradients(f, p, x, jnp.array([0, 1]), steps=0),
      ValueError,
      "steps must be a positive integer",
    ),
    (
      lambda f, p, x: A.integrated_gradients(
        f, p, x, jnp.array([0, 1]), baseline=jnp.zeros((5, 5, 1))
      ),
      ValueError,
      r"baseline must be .*got shape \(5, 5, 1\)",
    ),
    (
      lambda f, p, x: A.integrated_gradients(f, p, x, jnp.array([0, 1]), rule="simpson"),
      ValueError,
      "unknown rule 'simpson'",
    ),
    (
      lambda f, p, x: A.gradient(f, p, (x * 255).astype(jnp.uint8), jnp.array([0, 1])),
      TypeError,
      "floating-point",
    ),
    (
      lambda f, p, x: A.gradient(f, p, x.at[1, 0, 0, 0].set(jnp.nan), jnp.array([0, 1])),
      ValueError,
      r"x contains NaN \(images \[1\]\)",
    ),
    (
      lambda f, p, x: A.for_classes(A.gradient, [1, 1])(f, p, x),
      ValueError,
      "classes must not repeat",
    ),
    (lambda f, p, x: A.for_classes(A.gradient, [])(f, p, x), ValueError, "non-empty"),
  ],
)
def test_bad_input(cnn, call, exc, match):
  apply_fn, params, x, _ = cnn
  with pytest.raises(exc, match=match):
    call(apply_fn, params, x)


def test_nan_under_jit_gives_a_nan_map_for_that_image_only(cnn):
  """Under jit NaN goes the way of inf and bad targets: a NaN map, no runtime error."""
  apply_fn, params, x, t = cnn
  f = jax.jit(lambda v: A.integrated_gradients(apply_fn, params, v, t, steps=2))
  good = np.asarray(f(x))
  assert np.isfinite(good).all()
  maps = np.asarray(f(x.at[1, 3, 3, 0].set(jnp.nan)))
  assert np.isnan(maps[1]).all()
  np.testing.assert_array_equal(maps[0], good[0])


def test_smoothgrad_with_one_key_per_image_is_batch_independent(cnn):
  apply_fn, params, x, t = cnn
  sg = A.smoothgrad(A.gradient_x_input, samples=3, chunk_size=2, mode="vargrad")
  keys = jax.random.split(jax.random.key(5), 2)
  f = jax.jit(lambda v, tt, k: sg(apply_fn, params, v, tt, key=k))
  batched = f(x, t, keys)
  single = jnp.concatenate([f(x[i : i + 1], t[i : i + 1], keys[i : i + 1]) for i in range(2)])
  np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-9)
  with pytest.raises(ValueError, match=r"one per image, shape \[B\] = \[2\]; got shape \(3,\)"):
    sg(apply_fn, params, x, t, key=jax.random.split(jax.random.key(5), 3))


NESTED = {
  "smoothgrad(ig)": lambda f, p, x, t: A.smoothgrad(
    A.integrated_gradients, samples=4, chunk_size=2
  )(f, p, x, t, key=jax.random.key(0), steps=4),
  "guided_gradcam": lambda f, p, x, t: A.guided_gradcam(f, p, x, t),
  "all_classes(gradient)": lambda f, p, x, t: A.all_classes(A.gradient)(f, p, x),
  "all_classes(rise)": lambda f, p, x, t: A.all_classes(A.rise)(
    f, p, x, key=jax.random.key(0), num_masks=4
  ),
}


@pytest.mark.parametrize("name", NESTED)
def test_methods_that_nest_check_values_on_device_without_a_host_callback(cnn, name):
  """No host callback in the program (a NaN image is a NaN map, as an inf one is)."""
  apply_fn, params, x, t = cnn
  jaxpr = jax.make_jaxpr(lambda v, tt: NESTED[name](apply_fn, params, v, tt))(x, t)
  assert "callback" not in str(jaxpr)
