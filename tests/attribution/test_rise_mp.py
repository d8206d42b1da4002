"""RISE and meaningful perturbation: reference sums, invariances and known behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A

B, H, W, C, K = 2, 12, 12, 2, 3


@pytest.fixture(scope="module")
def quadratic():
  """A small non-linear model, so that RISE's weights are not all equal."""
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.standard_normal((H * W * C, K)) * 0.1, jnp.float32)

  def apply_fn(p, x):
    z = x.reshape(x.shape[0], -1) @ p
    return z + 0.5 * z**2

  x = jnp.asarray(rng.uniform(size=(B, H, W, C)), jnp.float32)
  return apply_fn, w, x, jnp.array([2, 0])


def test_rise_masks_are_smooth_grids_with_keep_rate_p():
  m = np.asarray(A.rise_masks(jax.random.key(0), jnp.arange(400), (H, W), grid_size=3, p=0.3))
  assert m.shape == (400, H, W) and m.min() >= 0.0 and m.max() <= 1.0
  assert abs(m.mean() - 0.3) < 0.03
  again = A.rise_masks(jax.random.key(0), jnp.arange(5, 8), (H, W), grid_size=3, p=0.3)
  np.testing.assert_array_equal(again, m[5:8])  # mask i depends only on i


@pytest.mark.parametrize("output", A._rise.OUTPUTS)
def test_rise_equals_the_explicit_weighted_sum_of_its_masks(quadratic, output):
  apply_fn, w, x, t = quadratic
  n, p = 50, 0.4
  ours = A.rise(
    apply_fn,
    w,
    x,
    t,
    key=jax.random.key(1),
    num_masks=n,
    grid_size=4,
    p=p,
    chunk_size=16,
    output=output,
    baseline=0.2,
  )
  masks = np.asarray(A.rise_masks(jax.random.key(1), jnp.arange(n), (H, W), grid_size=4, p=p))
  expected = np.zeros((B, H, W))
  for m in masks:
    mm = m[None, :, :, None]
    scores = np.asarray(apply_fn(w, jnp.asarray(np.asarray(x) * mm + 0.2 * (1 - mm))))
    if output == "probabilities":
      scores = np.exp(scores - scores.max(1, keepdims=True))
      scores /= scores.sum(1, keepdims=True)
    expected += scores[np.arange(B), np.asarray(t)][:, None, None] * m
  expected /= n * p
  np.testing.assert_allclose(
    ours, np.broadcast_to(expected[..., None], x.shape), rtol=2e-5, atol=1e-6
  )


def test_rise_chunking_and_all_classes_share_one_set_of_masks(quadratic):
  apply_fn, w, x, t = quadratic
  kw = dict(key=jax.random.key(2), num_masks=30, grid_size=3)
  whole = A.rise(apply_fn, w, x, t, chunk_size=None, **kw)
  np.testing.assert_allclose(
    A.rise(apply_fn, w, x, t, chunk_size=7, **kw), whole, rtol=1e-5, atol=1e-7
  )
  every = A.all_classes(A.rise)(apply_fn, w, x, chunk_size=7, **kw)
  assert every.shape == (K,) + x.shape
  for c in range(K):
    np.testing.assert_allclose(
      every[c], A.rise(apply_fn, w, x, jnp.full(B, c), chunk_size=7, **kw), rtol=1e-5, atol=1e-7
    )
  some = A.for_classes(A.rise, jnp.array([[2, 0]]))(apply_fn, w, x, chunk_size=7, **kw)
  np.testing.assert_allclose(some[0], whole, rtol=1e-5, atol=1e-7)


def test_rise_finds_the_one_region_a_model_looks_at():
  def apply_fn(p, x):
    s = x[:, :4, :4, :].mean(axis=(1, 2, 3))
    return jnp.stack([10 * s, jnp.zeros_like(s)], axis=1)

  x = jnp.ones((1, H, W, 1))
  sal = np.asarray(
    A.rise(apply_fn, None, x, jnp.array([0]), key=jax.random.key(0), num_masks=500, grid_size=4)
  )[0, ..., 0]
  assert sal[:4, :4].mean() > sal[6:, 6:].mean() + 0.05


def _square_detector(p, x):
  """Class 0's logit is high when the central 6x6 square is bright."""
  s = x[:, 5:11, 5:11, :].mean(axis=(1, 2, 3))
  return jnp.stack([20 * (s - 0.7), jnp.zeros_like(s)], axis=1)


def test_meaningful_perturbation_deletes_the_evidence_and_preserves_it():
  x = jnp.zeros((2, 16, 16, 1)).at[:, 5:11, 5:11, :].set(1.0)
  t = jnp.array([0, 0])
  # Blurring the whole image does destroy the class (logit 6 -> -6.5).
  assert float(_square_detector(None, A.make_baseline(x, "blur", blur_sigma=3.0))[0, 0]) < -6
  for mode in A._meaningful_perturbation.MODES:
    maps, loss = A.meaningful_perturbation(
      _square_detector,
      None,
      x,
      t,
      steps=150,
      mask_size=8,
      blur_sigma=3.0,
      mode=mode,
      return_loss=True,
    )
    sal = np.asarray(maps)[0, ..., 0]
    inside, corner = sal[5:11, 5:11].mean(), sal[:3, :3].mean()
    assert inside > 0.95 and inside > corner + 0.4, (mode, inside, corner)
    # Deletion drove p_t from ~1 to ~0; preservation kept it near 1.
    assert float(loss.max()) < 0.05, (mode, loss)


def test_total_variation_known_values():
  m = jnp.array([[0.0, 1.0], [0.0, 1.0]])
  assert float(A.total_variation(m, 1.0)) == pytest.approx(1.0)
  assert float(A.total_variation(2 * m, 3.0)) == pytest.approx(8.0)


@pytest.mark.parametrize(
  "method,kw",
  [
    (A.rise, {"key": jax.random.key(3), "num_masks": 20, "grid_size": 3, "chunk_size": 8}),
    (A.meaningful_perturbation, {"steps": 5, "mask_size": 6}),
  ],
)
def test_batched_equals_per_example_and_jit_equals_eager(quadratic, method, kw):
  apply_fn, w, x, t = quadratic
  batched = method(apply_fn, w, x, t, **kw)
  single = jnp.concatenate(
    [method(apply_fn, w, x[i : i + 1], t[i : i + 1], **kw) for i in range(B)]
  )
  np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)
  jitted = jax.jit(lambda p, v, tt: method(apply_fn, p, v, tt, **kw))(w, x, t)
  np.testing.assert_allclose(jitted, batched, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  "call,exc,match",
  [
    (lambda f, p, x, t: A.rise(f, p, x, t, num_masks=10), ValueError, "rise needs key"),
    (
      lambda f, p, x, t: A.rise(f, p, x, t, key=jax.random.key(0), num_masks=0),
      ValueError,
      "num_masks must be a positive integer",
    ),
    (
      lambda f, p, x, t: A.rise(f, p, x, t, key=jax.random.key(0), p=1.5),
      ValueError,
      r"p must lie in \(0, 1\]",
    ),
    (
      lambda f, p, x, t: A.rise(f, p, x, t, key=jax.random.key(0), output="softmax"),
      ValueError,
      "unknown output 'softmax'",
    ),
    (
      lambda f, p, x, t: A.meaningful_perturbation(f, p, x, t, mode="keep"),
      ValueError,
      "unknown mode 'keep'",
    ),
    (
      lambda f, p, x, t: A.meaningful_perturbation(f, p, x, t, mask_size=13),
      ValueError,
      "mask_size must be at most the image side 12",
    ),
    (
      lambda f, p, x, t: A.meaningful_perturbation(f, p, x, t, steps=0),
      ValueError,
      "steps must be a positive integer",
    ),
    (
      lambda f, p, x, t: A.rise(f, p, x, jnp.array([0, 3]), key=jax.random.key(0)),
      ValueError,
      r"target must lie in \[0, 3\)",
    ),
  ],
)
def test_bad_input(quadratic, call, exc, match):
  apply_fn, w, x, t = quadratic
  with pytest.raises(exc, match=match):
    call(apply_fn, w, x, t)
