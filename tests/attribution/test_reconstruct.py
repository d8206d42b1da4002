"""reconstruct and keep_top: the kept pixels stay, the rest is the generator's, batch-independent."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A

B, H, W, C, D = 3, 8, 8, 2, 5


class _Affine(NamedTuple):
  """A generator whose fill is known: ``sigmoid(sum(z)) * (1 + x * m)`` in every pixel."""

  latent_dim: int = D

  def decode(self, z, x, mask):
    return jax.nn.sigmoid(z.sum(-1))[:, None, None, None] * (1 + x * mask)


@pytest.fixture(scope="module")
def inputs():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(B, H, W, C)), jnp.float32)
  scores = jnp.asarray(rng.uniform(size=(B, H, W)), jnp.float32)
  return x, A.keep_top(scores, 0.25)


def test_kept_pixels_stay_and_the_rest_is_the_generators_fill(inputs):
  x, mask = inputs
  key = jax.random.key(3)
  out = np.asarray(A.reconstruct(_Affine(), x, mask, key=key, num_samples=4))
  assert out.shape == (4, B, H, W, C)
  m = np.asarray(mask)[..., None]
  for i in range(4):
    z = np.asarray(jax.random.normal(jax.random.fold_in(key, i), (B, D)))
    fill = 1 / (1 + np.exp(-z.sum(-1)))[:, None, None, None] * (1 + np.asarray(x) * m)
    np.testing.assert_allclose(out[i], m * np.asarray(x) + (1 - m) * fill, rtol=1e-6)
  kept = np.broadcast_to(m, out.shape[1:]) == 1
  np.testing.assert_array_equal(out[:, kept], np.broadcast_to(np.asarray(x)[kept], (4, kept.sum())))
  assert np.abs(out[0] - out[1]).max() > 1e-3  # the samples differ


def test_per_image_keys_make_samples_batch_independent_and_jit_equals_eager(inputs):
  x, mask = inputs
  keys = jax.random.split(jax.random.key(1), B)
  whole = A.reconstruct(_Affine(), x, mask, key=keys, num_samples=3)
  for b in range(B):
    one = A.reconstruct(
      _Affine(), x[b : b + 1], mask[b : b + 1], key=keys[b : b + 1], num_samples=3
    )
    np.testing.assert_allclose(one[:, 0], whole[:, b], rtol=1e-6)
  jitted = jax.jit(lambda x, m, k: A.reconstruct(_Affine(), x, m, key=k, num_samples=3))
  np.testing.assert_allclose(jitted(x, mask, keys), whole, rtol=1e-6)
  # A mask given per channel is the same as one given once.
  np.testing.assert_allclose(
    A.reconstruct(_Affine(), x, jnp.repeat(mask[..., None], C, -1), key=keys, num_samples=3),
    whole,
    rtol=1e-6,
  )


def test_keep_top_keeps_exactly_k_pixels_with_ties_by_position():
  s = jnp.asarray([[[3.0, 1.0, 3.0], [3.0, 0.0, 2.0]]])
  np.testing.assert_array_equal(A.keep_top(s, 2 / 6), [[[1, 0, 1], [0, 0, 0]]])
  np.testing.assert_array_equal(A.keep_top(s, 0.5), [[[1, 0, 1], [1, 0, 0]]])
  np.testing.assert_array_equal(A.keep_top(s, 0.0), np.zeros((1, 2, 3)))
  rng = np.random.default_rng(0)
  scores = jnp.asarray(rng.integers(0, 4, size=(4, 10, 10)), jnp.float32)  # many ties
  frac = jnp.asarray([0.0, 0.13, 0.5, 1.0])
  kept = np.asarray(A.keep_top(scores, frac))
  np.testing.assert_array_equal(kept.sum((1, 2)), [0, 13, 50, 100])
  for b in range(4):  # every kept score is >= every dropped one
    if 0 < kept[b].sum() < 100:
      assert np.asarray(scores[b])[kept[b] == 1].min() >= np.asarray(scores[b])[kept[b] == 0].max()


@pytest.mark.parametrize(
  "generator, kwargs, message",
  [
    (
      None,
      {},
      "reconstruct needs a trained generative model; got generator=None. Train one with "
      "`jaxsal train-generator",
    ),
    (object(), {}, "generator must have latent_dim and decode"),
    (_Affine(), {"num_samples": 0}, "num_samples must be a positive integer"),
    (
      _Affine(),
      {"mask": jnp.ones((B, H + 1, W))},
      r"mask must have shape \[B, H, W\] = \(3, 8, 8\)",
    ),
    (_Affine(), {"key": None}, "reconstruct needs key="),
  ],
)
def test_bad_arguments_are_named(inputs, generator, kwargs, message):
  x, mask = inputs
  kw = {"mask": mask, "key": jax.random.key(0), **kwargs}
  with pytest.raises(ValueError, match=message):
    A.reconstruct(generator, x, kw.pop("mask"), **kw)
