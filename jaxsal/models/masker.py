"""The masker of Phang, Park & Geras (2020): a saliency mask from a classifier's taps in one pass.

For each used tap: 1x1 convolution to ``hidden`` channels (no bias),
BatchNorm, ReLU, bilinear resize to ``1/mask_scale`` of the input.
Concatenated, a 3x3 convolution gives one channel of logits; the mask is
their sigmoid, repeated ``mask_scale`` times (nearest) to the input size.
The taps enter through ``stop_gradient``: training the masker never trains
the classifier through its features.

The Gumbel variant trains with ``sigmoid((logit + log u - log(1 - u)) / tau)``
and a straight-through hard threshold at 0.5, and evaluates with
``1[logit > 0]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Masker(nn.Module):
  """Maps a classifier's tapped feature maps to a mask ``[B, H, W, 1]`` in [0, 1].

  Attributes:
    layers: the taps used, e.g. ``('l3', 'l4')`` (the paper's best) or
      ``('l0', ..., 'l4')`` (its code's default).
    hidden: channels per tap after the 1x1 convolution (64).
    mask_scale: the mask's resolution is ``1/mask_scale`` of the input (4).
    gumbel: the Gumbel straight-through variant.
    temperature: the Gumbel relaxation's temperature (0.1).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.models import Masker
    >>> # A classifier's taps, e.g. apply_fn.with_taps(params, x, taps=['l3', 'l4'])[1]
    >>> feats = {"l3": jnp.ones((2, 2, 2, 8)), "l4": jnp.ones((2, 1, 1, 8))}
    >>> masker = Masker(layers=("l3", "l4"), hidden=4)
    >>> variables = masker.init(jax.random.key(0), feats, (16, 16))
    >>> mask = masker.apply(variables, feats, (16, 16))
    >>> mask.shape, bool(((mask >= 0) & (mask <= 1)).all())
    ((2, 16, 16, 1), True)

  References:
    Phang, Park & Geras, "Investigating and Simplifying Masking-based
    Saliency Methods for Model Interpretability", 2020.
  """

  layers: Sequence[str] = ("l3", "l4")
  hidden: int = 64
  mask_scale: int = 4
  gumbel: bool = False
  temperature: float = 0.1

  @nn.compact
  def __call__(
    self,
    features: Mapping[str, jax.Array],
    input_hw: Sequence[int],
    *,
    train: bool = False,
    return_logits: bool = False,
  ):
    """Returns the mask ``[B, H, W, 1]`` (and, if asked, the low-resolution logits).

    Args:
      features: tap name -> ``[B, h, w, c]`` feature maps of the classifier.
      input_hw: the input's ``(H, W)``; both must be multiples of ``mask_scale``.
      train: BatchNorm in training mode; the Gumbel variant then samples
        (it needs a ``'gumbel'`` rng).
      return_logits: also return the ``[B, H/s, W/s, 1]`` logits.
    """
    missing = [name for name in self.layers if name not in features]
    if missing:
      raise ValueError(
        f"the masker uses taps {list(self.layers)} but features lack {missing}; "
        f"it got {sorted(features)}"
      )
    h, w = int(input_hw[0]), int(input_hw[1])
    if h % self.mask_scale or w % self.mask_scale:
      raise ValueError(f"input_hw {h}x{w} must be a multiple of mask_scale={self.mask_scale}")
    mh, mw = h // self.mask_scale, w // self.mask_scale
    parts = []
    for name in self.layers:
      f = jax.lax.stop_gradient(features[name])
      f = nn.Conv(self.hidden, (1, 1), use_bias=False, name=f"{name}_conv")(f)
      f = nn.BatchNorm(use_running_average=not train, name=f"{name}_bn")(f)
      f = nn.relu(f)
      parts.append(jax.image.resize(f, (f.shape[0], mh, mw, f.shape[-1]), "bilinear"))
    logits = nn.Conv(1, (3, 3), padding="SAME", name="out")(jnp.concatenate(parts, -1))
    if not self.gumbel:
      low = jax.nn.sigmoid(logits)
    elif train:
      u = jax.random.uniform(self.make_rng("gumbel"), logits.shape, minval=1e-6, maxval=1.0 - 1e-6)
      soft = jax.nn.sigmoid((logits + jnp.log(u) - jnp.log1p(-u)) / self.temperature)
      hard = (soft > 0.5).astype(soft.dtype)
      low = soft + jax.lax.stop_gradient(hard - soft)  # straight through
    else:
      low = (logits > 0).astype(logits.dtype)
    mask = jnp.repeat(jnp.repeat(low, self.mask_scale, axis=1), self.mask_scale, axis=2)
    return (mask, logits) if return_logits else mask
