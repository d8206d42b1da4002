"""SmoothGrad, SmoothGrad squared and VarGrad: a transform over any method."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxsal._checks import check_choice, check_positive_int
from jaxsal.attribution._common import check_inputs, nested_calls, poison_invalid

MODES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def noise_scale(x: jax.Array, sigma: float) -> jax.Array:
  """``sigma * (max - min)`` of each image: ``[B, 1, 1, 1]``."""
  flat = x.reshape(x.shape[0], -1)
  return (sigma * (flat.max(1) - flat.min(1))).reshape((-1,) + (1,) * (x.ndim - 1))


def sample_noise(key: jax.Array, x: jax.Array, i: jax.Array, scale: jax.Array) -> jax.Array:
  """The ``i``-th noise draw: ``scale * N(0, 1)``.

  With one key, the whole batch's noise is drawn with ``fold_in(key, i)``;
  with one key per image (``key`` of shape ``[B]``), image ``b``'s noise is
  drawn with ``fold_in(key[b], i)``, so it does not depend on the batch.
  """
  if jnp.ndim(key) == 0:
    return scale * jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
  one = lambda k: jax.random.normal(jax.random.fold_in(k, i), x.shape[1:], x.dtype)
  return scale * jax.vmap(one)(key)


def smoothgrad(
  method: Callable,
  *,
  samples: int = 50,
  sigma: float = 0.15,
  mode: str = "smoothgrad",
  chunk_size: int | None = None,
) -> Callable:
  """Averages ``method`` over noisy copies of the input (Smilkov et al. 2017).

  Sample ``i`` adds ``sigma * (max(x) - min(x)) * N(0, 1)`` (range per
  image) drawn with ``fold_in(key, i)``; pass one key per image
  (``jax.random.split(key, B)``) for noise that does not depend on the batch
  an image is in (then a batch gives the same maps as its images alone). ``smoothgrad`` returns the mean of the maps,
  ``smoothgrad_sq`` the mean of their squares, ``vargrad`` their variance
  (Adebayo et al. 2018). Samples run ``chunk_size`` at a time (a scan over
  vmapped chunks), so memory does not grow with ``samples``.

  Args:
    method: any attribution method.
    samples: number of noisy copies (> 0).
    sigma: noise standard deviation relative to each image's value range.
    mode: one of ``MODES``.
    chunk_size: samples per vmapped chunk; default all at once.

  Returns:
    ``fn(apply_fn, params, x, target, *, key, **kw) -> maps``; ``key`` is
    required: one typed key, or ``[B]`` keys (one per image).

  References:
    Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.attribution import gradient, smoothgrad
    >>> w = jnp.arange(64 * 3.0).reshape(64, 3)  # a linear model on 8x8 grey images, 3 classes
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> x, t = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1)), jnp.array([2, 0])
    >>> sg = smoothgrad(gradient, samples=8)
    >>> maps = sg(apply_fn, w, x, t, key=jax.random.key(1))
    >>> bool(jnp.allclose(maps, gradient(apply_fn, w, x, t)))  # a linear model's gradient is flat
    True
    >>> vg = smoothgrad(gradient, samples=8, mode="vargrad")(apply_fn, w, x, t, key=jax.random.key(1))
    >>> float(jnp.abs(vg).max()) < 1e-3
    True
  """
  check_positive_int(samples, "samples")
  check_choice(mode, "mode", MODES)
  if not sigma >= 0:
    raise ValueError(f"sigma must be >= 0; got {sigma}")
  chunk = samples if chunk_size is None else chunk_size
  check_positive_int(chunk, "chunk_size")
  chunk = min(chunk, samples)

  @functools.wraps(method)
  def smoothed(apply_fn, params, x, target, *, key=None, **kwargs):
    if key is None:
      raise ValueError("smoothgrad needs key=jax.random.key(seed) to draw its noise")
    x, target = check_inputs(apply_fn, params, x, target)
    if jnp.ndim(key) not in (0, 1) or (jnp.ndim(key) == 1 and key.shape[0] != x.shape[0]):
      raise ValueError(
        f"key must be one PRNG key or one per image, shape [B] = [{x.shape[0]}]; "
        f"got shape {tuple(jnp.shape(key))}"
      )
    scale = noise_scale(x, sigma)
    # Full chunks in a scan, then the remainder (if any) in one more vmapped
    # pass: padding the last chunk would compute up to chunk - 1 wasted samples.
    n_full, rest = divmod(samples, chunk)

    def one(i):
      m = method(apply_fn, params, x + sample_noise(key, x, i, scale), target, **kwargs)
      return m, m * m

    def chunk_sums(ids):
      m, m2 = jax.vmap(one)(ids)
      return m.sum(0), m2.sum(0)

    def body(carry, ids):
      m, m2 = chunk_sums(ids)
      return (carry[0] + m, carry[1] + m2), None

    zeros = jnp.zeros_like(x)
    with nested_calls():
      (s, s2), _ = jax.lax.scan(
        body, (zeros, zeros), jnp.arange(n_full * chunk).reshape(n_full, chunk)
      )
      if rest:
        m, m2 = chunk_sums(jnp.arange(n_full * chunk, samples))
        s, s2 = s + m, s2 + m2
    mean, mean_sq = s / samples, s2 / samples
    if mode == "smoothgrad":
      maps = mean
    elif mode == "smoothgrad_sq":
      maps = mean_sq
    else:
      maps = mean_sq - mean * mean
    return poison_invalid(maps, apply_fn, params, x, target)

  return smoothed
