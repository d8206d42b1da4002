"""A convolutional VAE that fills in the pixels a mask leaves out (for reconstructions of salient inputs).

The condition is what an explanation keeps: the kept pixels ``x * m`` and the
mask ``m`` itself. The encoder sees the whole image and the condition and
gives ``q(z | x, m)``; the decoder sees ``z`` and the condition, through a
condition encoder whose features join the decoder at every scale (a U-Net's
skips), and gives Bernoulli logits for every pixel. The prior is
``N(0, I)``: new variations of an input come from fresh ``z``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsal.attribution._postprocess import keep_top


def condition(x: jax.Array, mask: jax.Array) -> jax.Array:
  """``[x * m, m]`` on the channel axis: what the model is told about an input."""
  return jnp.concatenate([x * mask, mask], axis=-1)


def space_to_depth(x: jax.Array) -> jax.Array:
  """``[B, H, W, C] -> [B, H/2, W/2, 4C]``: each 2x2 block of pixels onto the channels."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def depth_to_space(x: jax.Array) -> jax.Array:
  """The inverse of ``space_to_depth``."""
  b, h, w, c4 = x.shape
  c = c4 // 4
  x = x.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c)


class InpaintingVAE(nn.Module):
  """``q(z | x, m)`` and ``p(x | z, x * m, m)`` for images ``[B, H, W, C]`` in ``[0, 1]``.

  Attributes:
    latent_dim: size of ``z``.
    widths: channels of the stride-2 stages; ``H`` and ``W`` must be
      multiples of ``2 ** (len(widths) + 1)``.
    channels: image channels.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.models.vae import InpaintingVAE
    >>> vae = InpaintingVAE(latent_dim=4, widths=(4, 8), channels=1)  # 8x8 images and up
    >>> x, mask, key = jnp.ones((2, 8, 8, 1)), jnp.zeros((2, 8, 8, 1)), jax.random.key(0)
    >>> variables = vae.init(key, x, mask, key)
    >>> logits, mu, logvar = vae.apply(variables, x, mask, key)
    >>> logits.shape, mu.shape, logvar.shape
    ((2, 8, 8, 1), (2, 4), (2, 4))
  """

  latent_dim: int = 32
  widths: Sequence[int] = (32, 64, 128)
  channels: int = 1

  def setup(self):
    down = lambda w, name: nn.Conv(w, (3, 3), strides=(2, 2), name=name)
    self.enc = [down(w, f"enc_{i}") for i, w in enumerate(self.widths)]
    self.cond = [down(w, f"cond_{i}") for i, w in enumerate(self.widths)]
    self.to_stats = nn.Dense(2 * self.latent_dim, name="to_stats")
    self.from_z = nn.Dense(self.widths[-1], name="from_z")
    self.mix = [nn.Conv(w, (3, 3), name=f"mix_{i}") for i, w in enumerate(reversed(self.widths))]
    self.out = nn.Conv(4 * self.channels, (3, 3), name="out")

  def encode(self, x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mu, logvar)`` of ``q(z | x, m)``, each ``[B, latent_dim]``."""
    h = space_to_depth(jnp.concatenate([x, condition(x, mask)], axis=-1))
    for conv in self.enc:
      h = nn.relu(conv(h))
    stats = self.to_stats(h.reshape(h.shape[0], -1))
    mu, logvar = jnp.split(stats, 2, axis=-1)
    return mu, jnp.clip(logvar, -10.0, 10.0)

  def decode(self, z: jax.Array, x: jax.Array, mask: jax.Array) -> jax.Array:
    """Bernoulli logits ``[B, H, W, C]`` of every pixel given ``z`` and the kept pixels."""
    # Every convolution runs at half the image's side or less (space-to-depth
    # in, depth-to-space out): XLA:CPU's full-resolution convolution
    # gradients made a step several times slower.
    h = space_to_depth(condition(x, mask))
    skips = []
    for conv in self.cond:
      skips.append(h)
      h = nn.relu(conv(h))
    # The latent is broadcast over the coarsest grid and joins the condition there.
    zz = jnp.broadcast_to(self.from_z(z)[:, None, None, :], h.shape[:3] + (self.widths[-1],))
    h = jnp.concatenate([h, nn.relu(zz)], axis=-1)
    for mix, skip in zip(self.mix, reversed(skips)):
      b, hh, ww, c = h.shape
      h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest")
      h = nn.relu(mix(jnp.concatenate([h, skip], axis=-1)))
    return depth_to_space(self.out(h))

  def __call__(self, x: jax.Array, mask: jax.Array, key: jax.Array):
    """``(logits, mu, logvar)`` with ``z`` drawn from ``q(z | x, m)`` by reparameterisation."""
    mu, logvar = self.encode(x, mask)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)
    return self.decode(z, x, mask), mu, logvar


class Generator(NamedTuple):
  """A trained ``InpaintingVAE`` and its parameters: what ``attribution.reconstruct`` samples from.

  Load one with ``jaxsal.train.load_generator(workdir)``.
  """

  module: InpaintingVAE
  params: Any

  @property
  def latent_dim(self) -> int:
    return int(self.module.latent_dim)

  def decode(self, z: jax.Array, x: jax.Array, mask: jax.Array) -> jax.Array:
    """The decoder's mean image ``[B, H, W, C]`` in ``[0, 1]`` for latents ``z`` ``[B, latent_dim]``."""
    logits = self.module.apply({"params": self.params}, z, x, mask, method=InpaintingVAE.decode)
    return jax.nn.sigmoid(logits)


def vae_loss(
  logits: jax.Array, mu: jax.Array, logvar: jax.Array, x: jax.Array, *, free_bits: float = 0.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The negative ELBO per image, averaged over the batch: Bernoulli NLL summed over pixels + KL.

  With ``free_bits > 0`` the loss counts each latent dimension's batch-mean
  KL as at least ``free_bits`` nats (Kingma et al. 2016): below that the
  encoder is free to carry information, which keeps a decoder that also
  sees the kept pixels from ignoring ``z`` (posterior collapse, which makes
  every sample the same). The reported ``kl`` is the true one.

  Returns ``(loss, {'nll', 'kl'})``, each a batch mean in nats.
  """
  nll = jnp.sum(
    jnp.maximum(logits, 0) - logits * x + jnp.log1p(jnp.exp(-jnp.abs(logits))), axis=(1, 2, 3)
  )
  kl_dims = 0.5 * (jnp.exp(logvar) + mu**2 - 1.0 - logvar)
  kl = jnp.sum(kl_dims, axis=-1)
  counted = (
    jnp.sum(jnp.maximum(jnp.mean(kl_dims, axis=0), free_bits)) if free_bits > 0 else jnp.mean(kl)
  )
  return jnp.mean(nll) + counted, {"nll": jnp.mean(nll), "kl": jnp.mean(kl)}


def random_masks(
  key: jax.Array, batch: int, height: int, width: int, *, max_area: float = 0.5
) -> jax.Array:
  """Masks ``[B, H, W, 1]`` of 0/1 to train an inpainting model on.

  Each image draws a kept fraction ``a ~ U(0, max_area)`` and a kind: smooth
  blobs (uniform noise on a grid of ``1/8`` or ``1/4`` of the image side,
  bilinearly upsampled: the shapes optimised masks and maskers make) or
  scattered pixels; it keeps its ``round(a * H * W)`` highest-noise pixels.
  """
  ka, kk, k8, k4, k1 = jax.random.split(key, 5)
  area = jax.random.uniform(ka, (batch,), maxval=max_area)
  kind = jax.random.randint(kk, (batch,), 0, 3)

  def grid(k, scale):
    g = jax.random.uniform(k, (batch, max(height // scale, 1), max(width // scale, 1)))
    return jax.image.resize(g, (batch, height, width), "bilinear")

  noise = jnp.select(
    [kind[:, None, None] == 0, kind[:, None, None] == 1],
    [grid(k8, 8), grid(k4, 4)],
    jax.random.uniform(k1, (batch, height, width)),
  )
  return keep_top(noise, area)[..., None]
