"""A preservation mask optimised per input from a random start (our reading of Thakur & Fischmeister 2020)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxsal._checks import check_positive_int
from jaxsal.attribution._common import ApplyFn, check_inputs, poison_invalid
from jaxsal.attribution._integrated_gradients import make_baseline


def _check_weight(value: Any, name: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
    raise ValueError(f"{name} must be a number >= 0; got {value!r}")
  return float(value)


def _image_keys(key: Any, batch: int) -> jax.Array:
  if key is None:
    raise ValueError(
      "optimized_mask needs key=jax.random.key(seed) (or one key per image, "
      "shape [B]) to draw each mask's random start"
    )
  if jnp.ndim(key) == 0:
    return jax.random.split(key, batch)
  if jnp.ndim(key) == 1 and key.shape[0] == batch:
    return key
  raise ValueError(
    f"key must be one PRNG key or one per image, shape [B] = [{batch}]; "
    f"got shape {tuple(jnp.shape(key))}"
  )


def optimized_mask(
  apply_fn: ApplyFn,
  params: Any,
  x: jax.Array,
  target: jax.Array,
  *,
  key: jax.Array | None = None,
  steps: int = 300,
  learning_rate: float = 0.1,
  mask_scale: int = 8,
  lam_area: float = 1e-4,
  lam_tv: float = 1e-2,
  tv_beta: float = 3.0,
  substrate: Any = "blur",
  blur_sigma: float = 5.0,
  init_std: float = 1.0,
  return_aux: bool = False,
):
  """A mask optimised for each input, from a random start, to keep the target class.

  This is jaxsal's reading of Thakur & Fischmeister (2020), of which only the
  abstract is public: a randomly initialised mask per image, fitted through
  the model's input and output alone. Each image gets a parameter ``theta``
  of shape ``[H / mask_scale, W / mask_scale]`` drawn from
  ``N(0, init_std^2)``; the mask is ``m = up(sigmoid(theta))``, bilinearly
  upsampled to the image, and the masked input keeps the image where
  ``m = 1`` and shows the substrate where ``m = 0``:
  ``phi(x, m) = m x + (1 - m) s``. Adam (``optax``) minimises, per image,

  ``-log p_t(phi(x, m)) + lam_area * sum_pixels m + lam_tv * sum |grad theta-mask|^tv_beta``

  (cross-entropy of the target on the masked input, the L1 area of the
  full-resolution mask, and the total variation of the low-resolution mask).
  The defaults are Fong & Vedaldi's (2017) preservation game: lam_area 1e-4,
  lam_tv 1e-2, beta 3, a mask at 1/8 of the image's side, 300 steps at
  learning rate 0.1, a blurred substrate.

  All images are optimised together in one ``lax.scan``: the loss is the sum
  of the per-image losses and Adam acts elementwise, so each image's mask is
  the one it would get alone (with the same key), up to rounding. Batched
  and single-image convolutions round differently, and over hundreds of
  Adam steps that difference can grow where the loss is flat: on a random
  small CNN, 300 steps left the final losses equal to 6e-4 (relative) but moved some
  masks by up to 0.3 (``benchmarks/optimized_mask.py`` prints both).

  Args:
    apply_fn, params, x, target: the attribution contract (``x`` ``[B, H, W, C]``).
    key: one typed PRNG key, or ``[B]`` keys (one per image: the masks then
      do not depend on the batch they are computed in). Required.
    steps: Adam steps (> 0).
    learning_rate: Adam's learning rate.
    mask_scale: the mask is ``H / mask_scale x W / mask_scale`` before
      upsampling; must divide ``H`` and ``W``.
    lam_area: weight of the area term (>= 0).
    lam_tv: weight of the smoothness term (>= 0).
    tv_beta: exponent of the total variation.
    substrate: what replaces the removed pixels: ``'blur'`` (the image
      blurred with ``blur_sigma``), ``'zeros'``, a number, or an array of
      ``x``'s shape or of one image's shape.
    blur_sigma: the substrate's blur in pixels.
    init_std: standard deviation of ``theta`` at the start.
    return_aux: also return ``{'loss', 'prob', 'area', 'mask'}``: each
      image's final loss, the target's probability on the masked input and
      the mask's mean (each ``[B]``), and the low-resolution mask
      ``[B, H / mask_scale, W / mask_scale]``.

  Returns:
    ``[B, H, W, C]``: the mask ``m`` in ``[0, 1]``, the same in every
    channel (high where the pixel is needed to keep the class). With
    ``return_aux``, ``(maps, aux)``.

  Raises:
    ValueError: ``steps``/``mask_scale`` not positive integers, a
      ``mask_scale`` that does not divide the image, a negative
      ``lam_area``/``lam_tv``, no ``key``, bad ``x``/``target``.

  References:
    Thakur, Fischmeister, "A Generalizable Saliency Map-Based Interpretation
    of Model Outcome", 2020 (abstract only; this is our reading).
    Fong, Vedaldi, "Interpretable Explanations of Black Boxes by Meaningful
    Perturbation", 2017.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.attribution import optimized_mask
    >>> left = jnp.zeros((8, 8)).at[:, :4].set(1.0).reshape(64)
    >>> w = jnp.stack([left, 1 - left], axis=1)  # class 0 sees the left half, class 1 the right
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> maps = optimized_mask(apply_fn, w, jnp.ones((1, 8, 8, 1)), jnp.array([0]),
    ...                       key=jax.random.key(0), steps=50, mask_scale=2, substrate="zeros")
    >>> maps.shape, bool(maps[0, :, :4].mean() > maps[0, :, 4:].mean())  # keeps the left half
    ((1, 8, 8, 1), True)
  """
  check_positive_int(steps, "steps")
  check_positive_int(mask_scale, "mask_scale")
  lam_area = _check_weight(lam_area, "lam_area")
  lam_tv = _check_weight(lam_tv, "lam_tv")
  if not init_std >= 0:
    raise ValueError(f"init_std must be >= 0; got {init_std!r}")
  x, target = check_inputs(apply_fn, params, x, target)
  b, h, w, _ = x.shape
  if h % mask_scale or w % mask_scale:
    raise ValueError(
      f"mask_scale={mask_scale} must divide the image's height and width; got a {h}x{w} image"
    )
  keys = _image_keys(key, b)
  base = make_baseline(x, substrate, blur_sigma=blur_sigma)
  mh, mw = h // mask_scale, w // mask_scale
  optimizer = optax.adam(learning_rate)
  t = target.astype(jnp.int32)

  def upsample(m):  # [B, mh, mw] -> [B, H, W, 1]
    return jax.image.resize(m, (m.shape[0], h, w), method="bilinear", antialias=False)[..., None]

  def per_image(theta):
    m = jax.nn.sigmoid(theta)
    up = upsample(m)
    logits = apply_fn(params, up * x + (1 - up) * base)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    logp_t = jnp.take_along_axis(logp, t[:, None], axis=1)[:, 0]
    dy = jnp.abs(m[:, 1:, :] - m[:, :-1, :]) ** tv_beta
    dx = jnp.abs(m[:, :, 1:] - m[:, :, :-1]) ** tv_beta
    tv = dy.sum((1, 2)) + dx.sum((1, 2))
    loss = -logp_t + lam_area * up.sum((1, 2, 3)) + lam_tv * tv
    return loss, (jnp.exp(logp_t), up.mean((1, 2, 3)))

  total = lambda theta: jnp.sum(per_image(theta)[0])
  grad_fn = jax.grad(total)

  def step(carry, _):
    theta, opt_state = carry
    updates, opt_state = optimizer.update(grad_fn(theta), opt_state, theta)
    return (optax.apply_updates(theta, updates), opt_state), None

  theta0 = init_std * jax.vmap(lambda k: jax.random.normal(k, (mh, mw), jnp.float32))(keys)
  (theta, _), _ = jax.lax.scan(step, (theta0, optimizer.init(theta0)), None, length=steps)
  maps = jnp.broadcast_to(upsample(jax.nn.sigmoid(theta)), x.shape).astype(x.dtype)
  maps = poison_invalid(maps, apply_fn, params, x, target)
  if not return_aux:
    return maps
  loss, (prob, area) = per_image(theta)
  return maps, {"loss": loss, "prob": prob, "area": area, "mask": jax.nn.sigmoid(theta)}
