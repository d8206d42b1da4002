"""Variations of an input that keep its salient pixels and sample the rest (our reading of Thakur & Fischmeister 2020)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxsal._checks import check_images, check_positive_int


def reconstruct(
  generator: Any,
  x: jax.Array,
  mask: jax.Array,
  *,
  key: jax.Array | None = None,
  num_samples: int = 8,
) -> jax.Array:
  """``num_samples`` variations of each input: its kept pixels, the rest drawn from a generative model.

  For each sample ``i`` a latent ``z ~ N(0, I)`` is drawn and the generator's
  decoder fills the image given the kept pixels ``x * m`` and ``m``; the
  result keeps ``x`` exactly where ``m = 1`` and shows the generated pixels
  where ``m = 0``: ``m x + (1 - m) g(z, x m, m)`` (a soft mask blends). All
  samples come from one compiled call (vmapped over the samples).

  Whether the classifier keeps its decision on these variations is how the
  paper's abstract evaluates an explanation (89% in its experiments).

  Args:
    generator: a trained ``jaxsal.models.vae.Generator``
      (``jaxsal.train.load_generator(workdir)``), or anything with
      ``latent_dim`` and ``decode(z, x, mask)``.
    x: images ``[B, H, W, C]`` in the generator's data space (``[0, 1]`` for
      the digits).
    mask: what to keep, ``[B, H, W]``, ``[B, H, W, 1]`` or ``x``'s shape, in
      ``[0, 1]`` (binary masks keep pixels exactly).
    key: one typed PRNG key, or ``[B]`` keys (one per image: the samples of
      an image then do not depend on its batch). Required.
    num_samples: variations per image (> 0).

  Returns:
    ``[num_samples, B, H, W, C]``.

  Raises:
    ValueError: no generator (``None``), a mask of another shape, a bad
      ``num_samples`` or ``key``.

  References:
    Thakur, Fischmeister, "A Generalizable Saliency Map-Based Interpretation
    of Model Outcome", 2020 (abstract only; this is our reading).

  Example:
    >>> import types, jax, jax.numpy as jnp
    >>> from jaxsal.attribution import reconstruct
    >>> # A stand-in that fills with zeros; a trained one: jaxsal.train.load_generator(workdir).
    >>> gen = types.SimpleNamespace(latent_dim=4, decode=lambda z, x, m: jnp.zeros_like(x))
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> keep = jnp.zeros((2, 8, 8)).at[:, :, :4].set(1.0)  # e.g. keep_top(maps, 0.5)
    >>> samples = reconstruct(gen, x, keep, key=jax.random.key(0), num_samples=3)
    >>> samples.shape, samples[0, 0, 0, :, 0].tolist()  # the kept half, then the generated
    ((3, 2, 8, 8, 1), [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
  """
  if generator is None:
    raise ValueError(
      "reconstruct needs a trained generative model; got generator=None. Train "
      "one with `jaxsal train-generator --config generator_digits --workdir DIR` "
      "and load it with jaxsal.train.load_generator(DIR)"
    )
  if not (hasattr(generator, "decode") and hasattr(generator, "latent_dim")):
    raise ValueError(
      f"generator must have latent_dim and decode(z, x, mask) (a "
      f"jaxsal.models.vae.Generator); got {type(generator).__name__}"
    )
  check_positive_int(num_samples, "num_samples")
  check_images(x, "x")
  x = jnp.asarray(x)
  mask = jnp.asarray(mask, x.dtype)
  b, h, w, _ = x.shape
  if mask.shape == (b, h, w):
    mask = mask[..., None]
  if mask.shape not in ((b, h, w, 1), x.shape):
    raise ValueError(
      f"mask must have shape [B, H, W] = {(b, h, w)}, [B, H, W, 1] or x's shape "
      f"{tuple(x.shape)}; got {tuple(mask.shape)}"
    )
  one = mask[..., :1]
  if key is None:
    raise ValueError("reconstruct needs key=jax.random.key(seed) to draw its samples")
  d = int(generator.latent_dim)

  def draw(i):
    if jnp.ndim(key) == 0:
      return jax.random.normal(jax.random.fold_in(key, i), (b, d), jnp.float32)
    if jnp.ndim(key) == 1 and key.shape[0] == b:
      return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i), (d,), jnp.float32))(key)
    raise ValueError(
      f"key must be one PRNG key or one per image, shape [B] = [{b}]; "
      f"got shape {tuple(jnp.shape(key))}"
    )

  def sample(i):
    filled = generator.decode(draw(i), x, one).astype(x.dtype)
    return mask * x + (1 - mask) * filled

  return jax.vmap(sample)(jnp.arange(num_samples))
