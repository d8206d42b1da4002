"""Meaningful perturbation (Fong & Vedaldi 2017): a blur mask optimised per image."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxsal._checks import check_choice, check_positive_int
from jaxsal.attribution._common import ApplyFn, check_inputs, poison_invalid
from jaxsal.attribution._integrated_gradients import make_baseline

MODES = ("deletion", "preservation")


def total_variation(mask: jax.Array, beta: float) -> jax.Array:
  """``mean |m[i+1, j] - m[i, j]|^beta + mean |m[i, j+1] - m[i, j]|^beta`` of ``[h, w]``."""
  dy = jnp.abs(mask[1:, :] - mask[:-1, :]) ** beta
  dx = jnp.abs(mask[:, 1:] - mask[:, :-1]) ** beta
  return dy.mean() + dx.mean()


def meaningful_perturbation(
  apply_fn: ApplyFn,
  params: Any,
  x: jax.Array,
  target: jax.Array,
  *,
  key: jax.Array | None = None,
  mode: str = "deletion",
  steps: int = 300,
  learning_rate: float = 0.1,
  mask_size: int = 28,
  l1_coeff: float = 0.01,
  tv_coeff: float = 0.2,
  tv_beta: float = 3.0,
  blur_sigma: float = 5.0,
  return_loss: bool = False,
):
  """A smooth mask that deletes (or preserves) the evidence for the target class.

  Each image ``x`` gets a mask ``m`` in ``[0, 1]`` at ``mask_size x
  mask_size``, bilinearly upsampled to the image; ``m = 1`` keeps a pixel and
  ``m = 0`` replaces it with the blurred image:
  ``phi(x, m) = m x + (1 - m) blur(x)``. Adam (``optax``) minimises, from
  ``m = 1``, with the mask projected back to ``[0, 1]`` after every step:

  * ``deletion``: ``l1 * mean|1 - m| + tv * TV(m) + p_t(phi(x, m))``, the
    smallest deletion that destroys the class probability ``p_t``;
  * ``preservation``: ``l1 * mean|m| + tv * TV(m) + 1 - p_t(phi(x, m))``, the
    smallest region that keeps it.

  ``TV`` is ``total_variation`` with exponent ``tv_beta``. Each image's mask
  is optimised independently (the optimisation is vmapped over the batch),
  so a batch gives the same maps as its images one at a time.

  Args:
    apply_fn, params, x, target: the attribution contract.
    key: unused (the optimisation is deterministic); accepted for a uniform
      signature.
    mode: ``'deletion'`` (the paper's main game) or ``'preservation'``.
    steps: Adam steps (> 0).
    learning_rate: Adam's learning rate.
    mask_size: the mask's side before upsampling (at most the image's side).
    l1_coeff, tv_coeff, tv_beta: the regularisers' weights and TV exponent.
    blur_sigma: the blur's standard deviation in pixels.
    return_loss: also return each image's final loss ``[B]``.

  Returns:
    ``[B, H, W, C]`` saliency, the same in every channel: ``1 - m`` for
    deletion (high where deleting removes the class), ``m`` for
    preservation. With ``return_loss``, ``(maps, loss)``.

  Raises:
    ValueError: an unknown ``mode``, non-positive ``steps``/``mask_size``, a
      ``mask_size`` larger than the image, bad ``x``/``target``.

  References:
    Fong, Vedaldi, "Interpretable Explanations of Black Boxes by Meaningful
    Perturbation", 2017.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.attribution import meaningful_perturbation
    >>> left = jnp.zeros((8, 8)).at[:, :4].set(1.0).reshape(64)
    >>> w = jnp.stack([left, 1 - left], axis=1)  # class 0 sees the left half, class 1 the right
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
    >>> explain = jax.jit(lambda x, t: meaningful_perturbation(
    ...     apply_fn, w, x, t, steps=5, mask_size=4, blur_sigma=1.0, return_loss=True))
    >>> maps, loss = explain(x, jnp.array([0, 1]))  # one compiled call
    >>> maps.shape, loss.shape, bool(((maps >= 0) & (maps <= 1)).all())
    ((2, 8, 8, 1), (2,), True)
  """
  del key
  check_choice(mode, "mode", MODES)
  check_positive_int(steps, "steps")
  check_positive_int(mask_size, "mask_size")
  x, target = check_inputs(apply_fn, params, x, target)
  _, h, w, c = x.shape
  if mask_size > min(h, w):
    raise ValueError(f"mask_size must be at most the image side {min(h, w)}; got {mask_size}")
  blurred = make_baseline(x, "blur", blur_sigma=blur_sigma)
  optimizer = optax.adam(learning_rate)
  deletion = mode == "deletion"

  def upsample(m):
    return jax.image.resize(m, (h, w), method="bilinear", antialias=False)[..., None]

  def loss_fn(m, image, base, t):
    up = upsample(m)
    perturbed = up * image + (1 - up) * base
    prob = jax.nn.softmax(apply_fn(params, perturbed[None]), axis=-1)[0, t]
    area = jnp.mean(jnp.abs(1 - m)) if deletion else jnp.mean(jnp.abs(m))
    score = prob if deletion else 1 - prob
    return l1_coeff * area + tv_coeff * total_variation(m, tv_beta) + score

  def optimise(image, base, t):
    m = jnp.ones((mask_size, mask_size), x.dtype)
    grad_fn = jax.value_and_grad(loss_fn)

    def step(carry, _):
      m, opt_state = carry
      _, g = grad_fn(m, image, base, t)
      updates, opt_state = optimizer.update(g, opt_state, m)
      m = jnp.clip(optax.apply_updates(m, updates), 0.0, 1.0)
      return (m, opt_state), None

    (m, _), _ = jax.lax.scan(step, (m, optimizer.init(m)), None, length=steps)
    return m, loss_fn(m, image, base, t)

  masks, losses = jax.vmap(optimise)(x, blurred, target)
  sal = jax.vmap(upsample)(1 - masks if deletion else masks)
  maps = poison_invalid(jnp.broadcast_to(sal, x.shape).astype(x.dtype), apply_fn, params, x, target)
  return (maps, losses) if return_loss else maps
