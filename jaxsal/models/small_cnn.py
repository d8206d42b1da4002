"""A small five-stage CNN for quick experiments on small grayscale images.

Layout, for an ``H x W`` input (taps in brackets, with their resolution)::

  conv0 3x3 widths[0], stride 2 + relu           [l0, 1/2]
  conv1 3x3 widths[1], stride strides[0] + relu  [l1, 1/4]
  conv2 3x3 widths[2], stride strides[1] + relu  [l2, 1/8]
  conv3 3x3 widths[3], stride strides[2] + relu  [l3, 1/16]
  conv4 3x3 widths[4], stride strides[3] + relu  [l4, 1/16]

(resolutions for the default strides ``(2, 2, 2, 1)``). The stem is a
stride-2 convolution rather than a full-resolution one followed by pooling:
on a 2-core CPU that halves the cost of a training step, whose convolution
weight gradients dominate.
  global average pool, head Dense(num_classes)

Convolutions use ``'SAME'`` padding and carry a bias; there is no BatchNorm,
so ``variables`` is just ``{'params': ...}``. The activation is
``jax.nn.relu`` so that methods which rewrite it (guided backpropagation)
find it in the traced program.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsal.models._taps import tap


class SmallCNN(nn.Module):
  """A five-stage CNN with taps ``l0``..``l4``, cheap enough for CPU training.

  Attributes:
    num_classes: number of logits.
    widths: output channels of the five convolutions.
    strides: strides of conv1..conv4 (conv0 always has stride 2).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = SmallCNN(num_classes=10)
    >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)))
    >>> model.apply({'params': variables['params']}, jnp.zeros((2, 64, 64, 1))).shape
    (2, 10)
  """

  num_classes: int = 10
  widths: Sequence[int] = (16, 32, 64, 128, 128)
  strides: Sequence[int] = (2, 2, 2, 1)

  TAPS: ClassVar[tuple[str, ...]] = ("l0", "l1", "l2", "l3", "l4")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Returns logits ``[B, num_classes]`` for images ``x`` ``[B, H, W, C]``.

    Args:
      x: float images, NHWC.
      train: accepted for a uniform classifier signature; unused (no BatchNorm
        or dropout).

    Returns:
      Logits ``[B, num_classes]``.
    """
    del train
    if len(self.widths) != 5:
      raise ValueError(f"widths must have 5 entries; got {tuple(self.widths)}")
    if len(self.strides) != 4:
      raise ValueError(f"strides must have 4 entries (conv1..conv4); got {tuple(self.strides)}")
    # He initialisation: these ReLU stacks have no normalisation, and with
    # Flax's default (LeCun) initialisation plain SGD sits at chance for
    # hundreds of steps.
    init = nn.initializers.he_normal()
    x = jax.nn.relu(
      nn.Conv(
        self.widths[0], (3, 3), strides=(2, 2), padding="SAME", kernel_init=init, name="conv0"
      )(x)
    )
    x = tap(self, "l0", x)
    for i, stride in zip(range(1, 5), self.strides):
      x = nn.Conv(
        self.widths[i],
        (3, 3),
        strides=(stride, stride),
        padding="SAME",
        kernel_init=init,
        name=f"conv{i}",
      )(x)
      x = tap(self, f"l{i}", jax.nn.relu(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="head")(x)
