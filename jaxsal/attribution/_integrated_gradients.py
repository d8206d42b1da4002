"""Integrated gradients with five integration rules, chunked over steps."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal._checks import check_choice, check_positive_int
from jaxsal.attribution._common import (
  ApplyFn,
  check_inputs,
  input_gradient,
  poison_invalid,
  target_logits,
)

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def integration_points(steps: int, rule: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
  """Points ``alpha`` in [0, 1] and weights whose sum approximates ``integral_0^1 g``.

  ``riemann_left`` uses k/n for k = 0..n-1, ``riemann_right`` k = 1..n,
  ``riemann_middle`` (k + 1/2)/n, all with weight 1/n; ``riemann_trapezoid``
  uses n points from 0 to 1 with the end points weighted half;
  ``gausslegendre`` uses the n-point Gauss-Legendre rule (Captum's default).

  Returns:
    ``(alphas, weights)``, float64 numpy arrays of length ``steps``.
  """
  check_positive_int(steps, "steps")
  check_choice(rule, "rule", RULES)
  n = steps
  if rule == "gausslegendre":
    nodes, w = np.polynomial.legendre.leggauss(n)
    return (nodes + 1) / 2, w / 2
  if rule == "riemann_trapezoid":
    if n < 2:
      raise ValueError("steps must be at least 2 for riemann_trapezoid; got 1")
    w = np.full(n, 1.0 / (n - 1))
    w[[0, -1]] /= 2
    return np.linspace(0.0, 1.0, n), w
  k = np.arange(n, dtype=np.float64)
  offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
  return (k + offset) / n, np.full(n, 1.0 / n)


def _gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
  radius = max(int(np.ceil(3 * sigma)), 1)
  t = np.arange(-radius, radius + 1, dtype=np.float32)
  k = np.exp(-0.5 * (t / sigma) ** 2)
  k = jnp.asarray(k / k.sum(), x.dtype)
  c = x.shape[-1]
  pad = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
  dn = ("NHWC", "HWIO", "NHWC")
  kh = jnp.tile(k[:, None, None, None], (1, 1, 1, c))
  kw = jnp.tile(k[None, :, None, None], (1, 1, 1, c))
  y = jax.lax.conv_general_dilated(
    pad, kh, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c
  )
  return jax.lax.conv_general_dilated(
    y, kw, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c
  )


def make_baseline(x: jax.Array, baseline: Any = "zeros", *, blur_sigma: float = 5.0) -> jax.Array:
  """The reference input of each image.

  Args:
    x: images ``[B, H, W, C]``.
    baseline: ``'zeros'``; ``'blur'`` (the input blurred with a Gaussian of
      ``blur_sigma`` pixels); a number (a constant image); or an array of
      shape ``x.shape`` or ``x.shape[1:]`` (one baseline for every image).

  Raises:
    ValueError: an unknown name or an array of another shape.
  """
  if isinstance(baseline, str):
    check_choice(baseline, "baseline", ("zeros", "blur"))
    if baseline == "zeros":
      return jnp.zeros_like(x)
    if not blur_sigma > 0:
      raise ValueError(f"blur_sigma must be > 0; got {blur_sigma}")
    return _gaussian_blur(x, float(blur_sigma))
  b = jnp.asarray(baseline, x.dtype)
  if b.ndim == 0:
    return jnp.full_like(x, b)
  if b.shape == x.shape:
    return b
  if b.shape == x.shape[1:]:
    return jnp.broadcast_to(b, x.shape)
  raise ValueError(
    f"baseline must be 'zeros', 'blur', a number, or an array of shape "
    f"{tuple(x.shape)} or {tuple(x.shape[1:])}; got shape {tuple(b.shape)}"
  )


def integrated_gradients(
  apply_fn: ApplyFn,
  params: Any,
  x: jax.Array,
  target: jax.Array,
  *,
  key: jax.Array | None = None,
  baseline: Any = "zeros",
  steps: int = 50,
  rule: str = "gausslegendre",
  chunk_size: int | None = None,
  blur_sigma: float = 5.0,
  return_delta: bool = False,
):
  """Integrated gradients (Sundararajan et al. 2017).

  ``IG(x) = (x - x') * integral_0^1 dz_t/dx (x' + a (x - x')) da``, the
  integral taken with ``rule`` over ``steps`` points. The steps are evaluated
  ``chunk_size`` at a time (a ``lax.scan`` over chunks, each chunk one
  vmapped backward pass), so memory grows with ``chunk_size``, not ``steps``.

  Args:
    apply_fn, params, x, target: the attribution contract (x ``[B, H, W, C]``,
      target int ``[B]``).
    key: unused; accepted for a uniform signature.
    baseline: see ``make_baseline``.
    steps: number of integration points (> 0).
    rule: one of ``RULES``; Captum's default is ``gausslegendre``, PAIR's
      saliency package uses the end points of a linspace (``riemann_trapezoid``
      weights aside).
    chunk_size: points per backward pass; default all at once.
    blur_sigma: the Gaussian's sigma in pixels for ``baseline='blur'``.
    return_delta: also return the completeness error per image,
      ``sum(IG) - (z_t(x) - z_t(x'))``.

  Returns:
    ``[B, H, W, C]`` attributions, and ``[B]`` deltas if ``return_delta``.

  Raises:
    ValueError: bad steps, rule, chunk size, baseline, ``x`` or ``target``.

  References:
    Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.attribution import integrated_gradients
    >>> w = jnp.arange(64 * 3.0).reshape(64, 3)  # a linear model on 8x8 grey images, 3 classes
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
    >>> ig, delta = integrated_gradients(apply_fn, w, x, jnp.array([2, 0]), steps=8,
    ...                                  return_delta=True)
    >>> bool(jnp.allclose(ig[0].ravel(), x[0].ravel() * w[:, 2]))  # x * w for a linear model
    True
    >>> bool(jnp.abs(delta).max() < 1e-3)  # completeness: the maps sum to the logit
    True
  """
  del key
  x, target = check_inputs(apply_fn, params, x, target)
  alphas, weights = integration_points(steps, rule)
  chunk = steps if chunk_size is None else chunk_size
  check_positive_int(chunk, "chunk_size")
  chunk = min(chunk, steps)
  n_chunks = -(-steps // chunk)
  pad = n_chunks * chunk - steps
  # Padded points get weight 0, so they cost a little compute and change nothing.
  alphas = np.concatenate([alphas, np.zeros(pad)]).reshape(n_chunks, chunk)
  weights = np.concatenate([weights, np.zeros(pad)]).reshape(n_chunks, chunk)
  x0 = make_baseline(x, baseline, blur_sigma=blur_sigma)
  diff = x - x0

  def grad_at(a):
    return input_gradient(apply_fn, params, x0 + a.astype(x.dtype) * diff, target)

  def body(total, aw):
    a, w = aw
    g = jax.vmap(grad_at)(a)
    return total + jnp.tensordot(w.astype(x.dtype), g, axes=1), None

  total, _ = jax.lax.scan(
    body, jnp.zeros_like(x), (jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype))
  )
  attr = poison_invalid(diff * total, apply_fn, params, x, target)
  if not return_delta:
    return attr
  gap = target_logits(apply_fn, params, x, target) - target_logits(apply_fn, params, x0, target)
  return attr, jnp.sum(attr.reshape(x.shape[0], -1), axis=1) - gap
