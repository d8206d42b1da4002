"""optimized_mask: it finds the region a model decides by; batched, jit and hand-computed loss agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A

H = W = 32
REGION = (slice(8, 16), slice(16, 24))


def _region_model(p, x):
  """Class 0 wins when the 8x8 region at rows 8:16, cols 16:24 is bright on average."""
  del p
  s = x[:, REGION[0], REGION[1], :].mean(axis=(1, 2, 3))
  return jnp.stack([20 * (s - 0.5), jnp.zeros_like(s)], axis=1)


@pytest.fixture(scope="module")
def batch():
  x = jnp.ones((3, H, W, 1)) * jnp.array([1.0, 0.9, 1.1])[:, None, None, None]
  return x, jnp.zeros(3, jnp.int32), jax.random.split(jax.random.key(0), 3)


KW = dict(steps=200, mask_scale=4, substrate="zeros", lam_area=1e-3)


def test_the_mask_concentrates_on_the_region_the_decision_depends_on(batch):
  x, t, keys = batch
  maps, aux = A.optimized_mask(_region_model, None, x, t, key=keys, return_aux=True, **KW)
  m = np.asarray(maps)[..., 0]
  inside = np.zeros((H, W), bool)
  inside[REGION] = True
  for i in range(x.shape[0]):
    top = np.argsort(m[i].ravel())[::-1][: inside.sum()]
    # Stated thresholds: 90% of the region-sized top of the mask lies in the
    # region (bilinear upsampling of the 8x8 mask blurs its edge by a few
    # pixels), and the region's mean mask is 10x the rest's.
    assert inside.ravel()[top].mean() >= 0.9, i
    assert m[i][inside].mean() > 10 * m[i][~inside].mean(), i
  assert np.all(np.asarray(aux["prob"]) > 0.95)  # the class is kept ...
  assert np.all(np.asarray(aux["area"]) < 0.15)  # ... by a small mask


def test_batched_equals_per_image_and_jit_equals_eager(batch):
  x, t, keys = batch
  kw = dict(KW, steps=20)
  whole = A.optimized_mask(_region_model, None, x, t, key=keys, **kw)
  for i in range(x.shape[0]):
    one = A.optimized_mask(
      _region_model, None, x[i : i + 1], t[i : i + 1], key=keys[i : i + 1], **kw
    )
    np.testing.assert_allclose(one, whole[i : i + 1], rtol=1e-5, atol=1e-6)
  jitted = jax.jit(lambda x, t, k: A.optimized_mask(_region_model, None, x, t, key=k, **kw))
  np.testing.assert_allclose(jitted(x, t, keys), whole, rtol=1e-5, atol=1e-6)
  other = A.optimized_mask(
    _region_model, None, x, t, key=jax.random.split(jax.random.key(9), 3), **kw
  )
  assert float(jnp.abs(other - whole).max()) > 1e-3  # the start is random


def test_aux_equals_the_loss_recomputed_by_hand_from_the_returned_mask():
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.standard_normal((H * W * 2, 3)) * 0.05, jnp.float32)
  apply_fn = lambda p, x: jnp.tanh(x.reshape(x.shape[0], -1) @ p) * 4
  x = jnp.asarray(rng.uniform(size=(2, H, W, 2)), jnp.float32)
  t = jnp.array([1, 2])
  lam_area, lam_tv, beta, sub = 2e-4, 3e-2, 2.0, 0.25
  maps, aux = A.optimized_mask(
    apply_fn,
    w,
    x,
    t,
    key=jax.random.key(1),
    steps=7,
    mask_scale=8,
    lam_area=lam_area,
    lam_tv=lam_tv,
    tv_beta=beta,
    substrate=sub,
    return_aux=True,
  )
  m = np.asarray(maps, np.float64)
  np.testing.assert_array_equal(m[..., 0], m[..., 1])  # one mask for every channel
  assert m.min() >= 0 and m.max() <= 1
  masked = m * np.asarray(x) + (1 - m) * sub
  logits = np.asarray(apply_fn(w, jnp.asarray(masked, jnp.float32)), np.float64)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  p_t = p[np.arange(2), np.asarray(t)]
  np.testing.assert_allclose(aux["prob"], p_t, rtol=1e-4)
  np.testing.assert_allclose(aux["area"], m[..., 0].mean((1, 2)), rtol=1e-5)
  low = np.asarray(aux["mask"], np.float64)
  assert low.shape == (2, H // 8, W // 8)
  np.testing.assert_allclose(
    jax.image.resize(aux["mask"], (2, H, W), "bilinear"), m[..., 0], rtol=1e-6, atol=1e-7
  )
  tv = (np.abs(np.diff(low, axis=1)) ** beta).sum((1, 2)) + (
    np.abs(np.diff(low, axis=2)) ** beta
  ).sum((1, 2))
  expected = -np.log(p_t) + lam_area * m[..., 0].sum((1, 2)) + lam_tv * tv
  np.testing.assert_allclose(aux["loss"], expected, rtol=1e-4)


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    ({"steps": 0}, ValueError, "steps must be a positive integer"),
    ({"steps": -3}, ValueError, "steps must be a positive integer"),
    ({"lam_area": -0.1}, ValueError, "lam_area must be a number >= 0; got -0.1"),
    ({"lam_tv": -1}, ValueError, "lam_tv must be a number >= 0; got -1"),
    ({"mask_scale": 5}, ValueError, "mask_scale=5 must divide the image's height and width"),
    ({"key": None}, ValueError, "optimized_mask needs key="),
    (
      {"key": "split4"},
      ValueError,
      r"key must be one PRNG key or one per image, shape \[B\] = \[3\]",
    ),
  ],
)
def test_bad_arguments_are_named(batch, kwargs, error, message):
  x, t, keys = batch
  kw = {"key": keys, "steps": 2, "mask_scale": 4, **kwargs}
  if kw["key"] == "split4":
    kw["key"] = jax.random.split(jax.random.key(0), 4)
  with pytest.raises(error, match=message):
    A.optimized_mask(_region_model, None, x, t, **kw)
