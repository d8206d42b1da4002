"""The inpainting VAE's pieces: its loss by hand, its training masks, its layout transforms."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.models import vae


def test_the_loss_is_the_bernoulli_nll_plus_the_gaussian_kl_by_hand():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 4, 1)) * 3
  x = rng.uniform(size=(2, 4, 4, 1))
  mu, logvar = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)) * 0.5
  loss, parts = vae.vae_loss(*(jnp.asarray(a, jnp.float32) for a in (logits, mu, logvar, x)))
  p = 1 / (1 + np.exp(-logits))
  nll = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum((1, 2, 3))
  # KL(N(mu, s^2) || N(0, 1)) = (s^2 + mu^2 - 1 - log s^2) / 2 per dimension.
  kl = 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).sum(-1)
  np.testing.assert_allclose(parts["nll"], nll.mean(), rtol=1e-5)
  np.testing.assert_allclose(parts["kl"], kl.mean(), rtol=1e-5)
  np.testing.assert_allclose(loss, (nll + kl).mean(), rtol=1e-5)
  _, zero = vae.vae_loss(
    jnp.zeros((1, 2, 2, 1)), jnp.zeros((1, 3)), jnp.zeros((1, 3)), jnp.zeros((1, 2, 2, 1))
  )
  np.testing.assert_allclose(zero["kl"], 0.0, atol=1e-7)
  np.testing.assert_allclose(zero["nll"], 4 * np.log(2), rtol=1e-6)


def test_training_masks_are_binary_with_the_drawn_area():
  key = jax.random.key(0)
  m = np.asarray(vae.random_masks(key, 64, 16, 16, max_area=0.5))
  assert m.shape == (64, 16, 16, 1) and set(np.unique(m)) <= {0.0, 1.0}
  ka, _, _, _, _ = jax.random.split(key, 5)
  area = np.asarray(jax.random.uniform(ka, (64,), maxval=0.5))
  np.testing.assert_array_equal(m.sum((1, 2, 3)), np.round(area * 256))
  np.testing.assert_array_equal(m, vae.random_masks(key, 64, 16, 16, max_area=0.5))


def test_space_to_depth_and_back_and_the_decoder_reads_z_and_the_kept_pixels():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  s = vae.space_to_depth(x)
  np.testing.assert_array_equal(
    s[0, 0, 0], jnp.concatenate([x[0, 0, 0], x[0, 0, 1], x[0, 1, 0], x[0, 1, 1]])
  )
  np.testing.assert_array_equal(vae.depth_to_space(s), x)
  module = vae.InpaintingVAE(latent_dim=3, widths=(4, 8), channels=1)
  img = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
  mask = jnp.ones((2, 8, 8, 1)).at[:, 4:].set(0)
  params = module.init(jax.random.key(0), img, mask, jax.random.key(2))["params"]
  gen = vae.Generator(module, params)
  z = jax.random.normal(jax.random.key(3), (2, 3))
  out = gen.decode(z, img, mask)
  assert out.shape == img.shape and float(out.min()) >= 0 and float(out.max()) <= 1
  assert float(jnp.abs(gen.decode(z + 1, img, mask) - out).max()) > 1e-4
  # Pixels the mask hides do not reach the decoder.
  np.testing.assert_allclose(gen.decode(z, img.at[:, 4:].set(0.5), mask), out, rtol=1e-6)
  assert float(jnp.abs(gen.decode(z, img.at[:, :4].set(0.5), mask) - out).max()) > 1e-5


def test_free_bits_count_each_dimensions_mean_kl_as_at_least_the_floor():
  rng = np.random.default_rng(1)
  logits, x = rng.normal(size=(3, 2, 2, 1)), rng.uniform(size=(3, 2, 2, 1))
  mu = np.stack([np.zeros(3), np.full(3, 2.0)], axis=1)  # dim 0: KL 0; dim 1: KL 2
  logvar = np.zeros((3, 2))
  args = [jnp.asarray(a, jnp.float32) for a in (logits, mu, logvar, x)]
  plain, parts = vae.vae_loss(*args)
  floored, parts_fb = vae.vae_loss(*args, free_bits=0.5)
  np.testing.assert_allclose(parts["kl"], 2.0, rtol=1e-6)
  np.testing.assert_allclose(parts_fb["kl"], 2.0, rtol=1e-6)  # the reported KL is the true one
  np.testing.assert_allclose(floored - plain, 0.5, rtol=1e-5)  # dim 0 counted as 0.5 nats
