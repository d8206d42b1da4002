"""ResNet v1.5 (torchvision layout) with BatchNorm and taps ``l0``..``l4``.

The architecture, padding and parameter count follow torchvision's
``resnet18``/``resnet34``/``resnet50``: bottlenecks stride on their 3x3
convolution (v1.5), convolutions have no bias, padding is explicit and
symmetric (``SAME`` would pad stride-2 layers asymmetrically), BatchNorm uses
momentum 0.9 (torch's 0.1) and epsilon 1e-5. With ``train=False`` BatchNorm
uses its running averages, so ``apply`` needs no mutable collection and each
example's logits do not depend on the rest of the batch.

Taps (channels for ResNet-18/34 | ResNet-50, resolution)::

  l0  stem: conv7x7/2 + bn + relu + maxpool3x3/2   64 | 64     1/4
  l1  output of layer1                             64 | 256    1/4
  l2  output of layer2                            128 | 512    1/8
  l3  output of layer3                            256 | 1024   1/16
  l4  output of layer4                            512 | 2048   1/32

Submodule names mirror torchvision's state-dict keys, with the ``.`` between a
stage and its block index replaced by ``_``. A torchvision key maps to a Flax
path as follows (``{C}`` is ``params`` for weights, ``batch_stats`` for
running statistics; torch conv weights ``[O, I, kh, kw]`` become Flax kernels
``[kh, kw, I, O]`` by ``transpose(2, 3, 1, 0)``, the fc weight ``[O, I]``
becomes ``[I, O]`` by ``.T``)::

  conv1.weight                      params/conv1/kernel
  bn1.weight, bn1.bias              params/bn1/scale, params/bn1/bias
  bn1.running_mean, .running_var    batch_stats/bn1/mean, batch_stats/bn1/var
  layer{s}.{i}.conv{k}.weight       params/layer{s}_{i}/conv{k}/kernel
  layer{s}.{i}.bn{k}.*              {C}/layer{s}_{i}/bn{k}/*          (as bn1)
  layer{s}.{i}.downsample.0.weight  params/layer{s}_{i}/downsample_conv/kernel
  layer{s}.{i}.downsample.1.*       {C}/layer{s}_{i}/downsample_bn/*  (as bn1)
  fc.weight, fc.bias                params/fc/kernel, params/fc/bias
  *.num_batches_tracked             (dropped)

One difference in training only: torch updates ``running_var`` with the
unbiased batch variance, Flax with the biased one.

References:
  He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsal.models._conv import conv_general_dilated
from jaxsal.models._taps import tap

# torchvision: kaiming_normal_(mode='fan_out', nonlinearity='relu'), untruncated.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pad(k: int) -> tuple[tuple[int, int], tuple[int, int]]:
  return ((k // 2, k // 2), (k // 2, k // 2))


def _conv(features: int, k: int, stride: int, name: str, dtype: Any) -> nn.Conv:
  return nn.Conv(
    features,
    (k, k),
    strides=(stride, stride),
    padding=_pad(k),
    use_bias=False,
    kernel_init=_conv_init,
    dtype=dtype,
    name=name,
    conv_general_dilated=conv_general_dilated,
  )


def _bn(train: bool, name: str, dtype: Any) -> nn.BatchNorm:
  return nn.BatchNorm(
    use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name
  )


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection (ResNet-18/34).

  Attributes:
    features: output channels.
    stride: stride of the first convolution (and of the shortcut).
    dtype: compute dtype.
  """

  features: int
  stride: int = 1
  dtype: Any = jnp.float32

  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Returns the block's output ``[B, h / stride, w / stride, features]``."""
    shortcut = x
    y = _conv(self.features, 3, self.stride, "conv1", self.dtype)(x)
    y = jax.nn.relu(_bn(train, "bn1", self.dtype)(y))
    y = _conv(self.features, 3, 1, "conv2", self.dtype)(y)
    y = _bn(train, "bn2", self.dtype)(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = _conv(self.features, 1, self.stride, "downsample_conv", self.dtype)(x)
      shortcut = _bn(train, "downsample_bn", self.dtype)(shortcut)
    return jax.nn.relu(y + shortcut)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided, v1.5), 1x1 expand by 4, residual (ResNet-50).

  Attributes:
    features: channels of the 3x3 convolution; the output has ``4 * features``.
    stride: stride of the 3x3 convolution (and of the shortcut).
    dtype: compute dtype.
  """

  features: int
  stride: int = 1
  dtype: Any = jnp.float32

  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Returns the block's output ``[B, h / stride, w / stride, 4 * features]``."""
    out = self.features * self.expansion
    shortcut = x
    y = _conv(self.features, 1, 1, "conv1", self.dtype)(x)
    y = jax.nn.relu(_bn(train, "bn1", self.dtype)(y))
    y = _conv(self.features, 3, self.stride, "conv2", self.dtype)(y)
    y = jax.nn.relu(_bn(train, "bn2", self.dtype)(y))
    y = _conv(out, 1, 1, "conv3", self.dtype)(y)
    y = _bn(train, "bn3", self.dtype)(y)
    if self.stride != 1 or x.shape[-1] != out:
      shortcut = _conv(out, 1, self.stride, "downsample_conv", self.dtype)(x)
      shortcut = _bn(train, "downsample_bn", self.dtype)(shortcut)
    return jax.nn.relu(y + shortcut)


class ResNet(nn.Module):
  """ResNet v1.5 with taps ``l0`` (stem) and ``l1``..``l4`` (stage outputs).

  Attributes:
    stage_sizes: number of blocks in each of the four stages.
    block_cls: ``BasicBlock`` or ``Bottleneck``.
    num_classes: number of logits.
    dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters stay float32 and
      logits are returned as float32.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = ResNet18(num_classes=10)
    >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> sorted(k for k in variables if k in ('params', 'batch_stats'))
    ['batch_stats', 'params']
    >>> v = {k: variables[k] for k in ('params', 'batch_stats')}
    >>> model.apply(v, jnp.zeros((2, 32, 32, 3))).shape
    (2, 10)
  """

  stage_sizes: Sequence[int]
  block_cls: type[nn.Module]
  num_classes: int = 1000
  dtype: Any = jnp.float32

  TAPS: ClassVar[tuple[str, ...]] = ("l0", "l1", "l2", "l3", "l4")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Returns logits ``[B, num_classes]`` for images ``x`` ``[B, H, W, C]``.

    Args:
      x: float images, NHWC.
      train: use batch statistics and update ``batch_stats`` (which must then
        be mutable) instead of the running averages.

    Returns:
      Logits ``[B, num_classes]``, float32.
    """
    x = jnp.asarray(x, self.dtype)
    x = _conv(64, 7, 2, "conv1", self.dtype)(x)
    x = jax.nn.relu(_bn(train, "bn1", self.dtype)(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=_pad(3))
    x = tap(self, "l0", x)
    for s, n_blocks in enumerate(self.stage_sizes):
      features = 64 * 2**s
      for i in range(n_blocks):
        stride = 2 if s > 0 and i == 0 else 1
        x = self.block_cls(features, stride, dtype=self.dtype, name=f"layer{s + 1}_{i}")(
          x, train=train
        )
      x = tap(self, f"l{s + 1}", x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
    return jnp.asarray(x, jnp.float32)


def ResNet18(num_classes: int = 1000, **kwargs: Any) -> ResNet:
  """ResNet-18: BasicBlocks (2, 2, 2, 2); 11,689,512 parameters at 1000 classes.

  Args:
    num_classes: number of logits.
    **kwargs: other ``ResNet`` attributes (``dtype``).

  Returns:
    An unbound ``ResNet`` module.

  Example:
    >>> ResNet18(num_classes=10).stage_sizes
    (2, 2, 2, 2)
  """
  return ResNet(stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock, num_classes=num_classes, **kwargs)


def ResNet34(num_classes: int = 1000, **kwargs: Any) -> ResNet:
  """ResNet-34: BasicBlocks (3, 4, 6, 3); 21,797,672 parameters at 1000 classes.

  Args:
    num_classes: number of logits.
    **kwargs: other ``ResNet`` attributes (``dtype``).

  Returns:
    An unbound ``ResNet`` module.

  Example:
    >>> ResNet34().stage_sizes
    (3, 4, 6, 3)
  """
  return ResNet(stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock, num_classes=num_classes, **kwargs)


def ResNet50(num_classes: int = 1000, **kwargs: Any) -> ResNet:
  """ResNet-50 (v1.5): Bottlenecks (3, 4, 6, 3); 25,557,032 parameters at 1000 classes.

  Args:
    num_classes: number of logits.
    **kwargs: other ``ResNet`` attributes (``dtype``).

  Returns:
    An unbound ``ResNet`` module.

  Example:
    >>> ResNet50(num_classes=10).block_cls.__name__
    'Bottleneck'
  """
  return ResNet(stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, num_classes=num_classes, **kwargs)
