"""SmoothGrad / VarGrad and occlusion against known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A
from jaxsal.attribution._smoothgrad import noise_scale, sample_noise

B, H, W, C, K = 2, 6, 6, 2, 3


@pytest.fixture(scope="module")
def linear():
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.standard_normal((H * W * C, K)), jnp.float32)

  def apply_fn(p, x):
    return x.reshape(x.shape[0], -1) @ p

  x = jnp.asarray(rng.random((B, H, W, C)), jnp.float32)
  t = jnp.array([1, 2])
  wt = np.stack([np.asarray(w)[:, k].reshape(H, W, C) for k in t.tolist()])
  return apply_fn, w, x, t, wt


def test_smoothgrad_of_a_linear_gradient_is_the_weight_and_vargrad_zero(linear):
  apply_fn, w, x, t, wt = linear
  key = jax.random.key(0)
  sg = A.smoothgrad(A.gradient, samples=7)(apply_fn, w, x, t, key=key)
  np.testing.assert_allclose(sg, wt, rtol=1e-5)
  sq = A.smoothgrad(A.gradient, samples=7, mode="smoothgrad_sq")(apply_fn, w, x, t, key=key)
  np.testing.assert_allclose(sq, wt**2, rtol=1e-5)
  var = A.smoothgrad(A.gradient, samples=7, mode="vargrad")(apply_fn, w, x, t, key=key)
  np.testing.assert_allclose(var, 0.0, atol=1e-5)


def test_smoothgrad_equals_the_explicit_mean_over_its_documented_noise(linear):
  apply_fn, w, x, t, _ = linear
  key = jax.random.key(3)
  scale = noise_scale(x, 0.2)
  expected = np.mean(
    [
      np.asarray(A.gradient_x_input(apply_fn, w, x + sample_noise(key, x, i, scale), t))
      for i in range(10)
    ],
    axis=0,
  )
  got = A.smoothgrad(A.gradient_x_input, samples=10, sigma=0.2, chunk_size=4)(
    apply_fn, w, x, t, key=key
  )
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  flat = np.asarray(x).reshape(B, -1)
  np.testing.assert_allclose(
    np.asarray(scale).ravel(), 0.2 * (flat.max(1) - flat.min(1)), rtol=1e-6
  )


def test_vargrad_of_a_quadratic_matches_its_variance():
  # z = sum(a * x^2): grad = 2 a (x + n), so VarGrad = 4 a^2 s^2 with s the noise scale.
  a = jnp.linspace(0.5, 1.5, 16).reshape(1, 4, 4, 1)

  def apply_fn(p, x):
    z = jnp.sum(p * x * x, axis=(1, 2, 3))
    return jnp.stack([z, -z], 1)

  x = jnp.linspace(0.0, 1.0, 16).reshape(1, 4, 4, 1)
  var = A.smoothgrad(A.gradient, samples=4000, sigma=0.1, mode="vargrad", chunk_size=500)(
    apply_fn, a, x, jnp.array([0]), key=jax.random.key(1)
  )
  expected = 4 * np.asarray(a) ** 2 * 0.1**2
  np.testing.assert_allclose(var, expected, rtol=0.1)


def test_occlusion_of_one_pixel_patches_on_a_linear_model_is_gradient_x_input(linear):
  apply_fn, w, x, t, wt = linear
  # Occluding pixel (h, w) with 0 removes exactly sum_c x * w: spread over its channels.
  occ = A.occlusion(apply_fn, w, x, t, patch=1, stride=1)
  np.testing.assert_allclose(occ[..., 0], (np.asarray(x) * wt).sum(-1), rtol=1e-5, atol=1e-6)


def test_occlusion_averages_overlapping_patches(linear):
  apply_fn, w, x, t, wt = linear
  occ = np.asarray(A.occlusion(apply_fn, w, x, t, patch=2, stride=1, baseline=0.5))
  contrib = ((np.asarray(x) - 0.5) * wt).sum(-1)  # each pixel's share of a drop
  expected = np.zeros((B, H, W))
  count = np.zeros((H, W))
  for y0 in range(H - 1):
    for x0 in range(W - 1):
      d = contrib[:, y0 : y0 + 2, x0 : x0 + 2].sum((1, 2))
      expected[:, y0 : y0 + 2, x0 : x0 + 2] += d[:, None, None]
      count[y0 : y0 + 2, x0 : x0 + 2] += 1
  np.testing.assert_allclose(occ[..., 1], expected / count, rtol=1e-5, atol=1e-6)


def test_bad_hyperparameters(linear):
  apply_fn, w, x, t, _ = linear
  with pytest.raises(ValueError, match="samples must be a positive integer"):
    A.smoothgrad(A.gradient, samples=0)
  with pytest.raises(ValueError, match="unknown mode 'median'"):
    A.smoothgrad(A.gradient, mode="median")
  with pytest.raises(ValueError, match="needs key="):
    A.smoothgrad(A.gradient)(apply_fn, w, x, t)
  with pytest.raises(ValueError, match=r"patch \(7, 7\) is larger than the image \(6, 6\)"):
    A.occlusion(apply_fn, w, x, t, patch=7)
  with pytest.raises(ValueError, match="stride must be a positive integer"):
    A.occlusion(apply_fn, w, x, t, stride=0)
