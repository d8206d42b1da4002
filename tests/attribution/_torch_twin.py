"""A PyTorch twin of ``jaxsal.models.SmallCNN`` on the same weights, for Captum tests.

Only imported by tests that have already done ``pytest.importorskip('torch')``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def same_padding(n: int, k: int, s: int) -> tuple[int, int]:
  """Flax/XLA ``'SAME'`` padding ``(low, high)`` of one spatial axis.

  ``total = max((ceil(n / s) - 1) * s + k - n, 0)``, ``low = total // 2``,
  ``high = total - low``: a stride-2 3x3 convolution on an even size pads
  ``(0, 1)``, a stride-1 one ``(1, 1)``. PyTorch's ``padding='same'`` is
  symmetric-first and refuses strides > 1, hence this.
  """
  total = max((math.ceil(n / s) - 1) * s + k - n, 0)
  return total // 2, total - total // 2


class SmallCNNTwin(nn.Module):
  """``SmallCNN`` in PyTorch: NCHW images ``[B, C, H, W]`` -> logits ``[B, K]``.

  Built from the Flax ``params`` of a ``SmallCNN`` (``variables['params']``,
  or the whole ``variables`` dict): conv kernels HWIO become OIHW, the Dense
  head's ``(in, out)`` kernel becomes ``Linear``'s ``(out, in)`` weight, biases
  are copied. Each convolution has ``padding=0`` and is preceded by an
  ``F.pad`` with Flax's ``'SAME'`` amounts for the actual input size
  (:func:`same_padding`), so the twin computes the same function as the Flax
  model for any input size.

  Every ReLU is its own ``nn.ReLU`` module (``relu0`` .. ``relu4``), so
  Captum's ``GuidedBackprop`` / ``Deconvolution`` (which hook ``nn.ReLU``
  modules) modify each of them, and ``relu{i}`` is the layer whose output is
  jaxsal's tap ``l{i}`` (the post-ReLU feature map of ``conv{i}``): pass
  ``twin.relu4`` (also ``twin.tap_layers['l4']``) to Captum's
  ``LayerGradCam`` to match a Grad-CAM on tap ``'l4'``.

  Attributes:
    conv0 .. conv4: ``nn.Conv2d`` (3x3, ``padding=0``).
    relu0 .. relu4: distinct ``nn.ReLU`` instances.
    head: ``nn.Linear``.
    strides: the strides of conv0 .. conv4 (conv0's is always 2).
    tap_layers: ``{'l0': relu0, ..., 'l4': relu4}``.
  """

  def __init__(self, params: Mapping[str, Any], strides: Sequence[int] = (2, 2, 2, 1)):
    """Copies ``params`` (Flax ``SmallCNN`` params) into a new twin.

    Args:
      params: ``{'conv0': {'kernel', 'bias'}, ..., 'head': {...}}``, or the
        variables dict ``{'params': ...}`` holding it.
      strides: the Flax model's ``strides`` (conv1 .. conv4).
    """
    super().__init__()
    if "params" in params:
      params = params["params"]
    if len(strides) != 4:
      raise ValueError(f"strides must have 4 entries (conv1..conv4); got {tuple(strides)}")
    self.strides = (2,) + tuple(int(s) for s in strides)
    self.tap_layers: dict[str, nn.ReLU] = {}
    for i in range(5):
      kernel = np.array(params[f"conv{i}"]["kernel"], np.float32)  # HWIO (a writable copy)
      bias = np.array(params[f"conv{i}"]["bias"], np.float32)
      kh, kw, cin, cout = kernel.shape
      conv = nn.Conv2d(cin, cout, (kh, kw), stride=self.strides[i], padding=0, bias=True)
      with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))  # OIHW
        conv.bias.copy_(torch.from_numpy(bias))
      relu = nn.ReLU()
      setattr(self, f"conv{i}", conv)
      setattr(self, f"relu{i}", relu)
      self.tap_layers[f"l{i}"] = relu
    kernel = np.array(params["head"]["kernel"], np.float32)  # (in, out)
    bias = np.array(params["head"]["bias"], np.float32)
    self.head = nn.Linear(kernel.shape[0], kernel.shape[1], bias=True)
    with torch.no_grad():
      self.head.weight.copy_(torch.from_numpy(kernel.T.copy()))
      self.head.bias.copy_(torch.from_numpy(bias))
    self.eval()

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, K]`` for float NCHW images ``x``."""
    for i in range(5):
      conv = getattr(self, f"conv{i}")
      kh, kw = conv.kernel_size
      top, bottom = same_padding(x.shape[2], kh, self.strides[i])
      left, right = same_padding(x.shape[3], kw, self.strides[i])
      x = getattr(self, f"relu{i}")(conv(F.pad(x, (left, right, top, bottom))))
    return self.head(x.mean(dim=(2, 3)))


def twin_of(model: Any, variables: Mapping[str, Any]) -> SmallCNNTwin:
  """The twin of the Flax ``SmallCNN`` ``model`` with ``variables``."""
  return SmallCNNTwin(variables, strides=tuple(model.strides))


def to_torch(x_nhwc: Any, requires_grad: bool = False) -> torch.Tensor:
  """NHWC array (numpy or JAX) -> a new contiguous float32 NCHW tensor."""
  t = torch.from_numpy(np.array(np.asarray(x_nhwc, np.float32).transpose(0, 3, 1, 2), order="C"))
  return t.requires_grad_(requires_grad)


def to_nhwc(t: torch.Tensor) -> np.ndarray:
  """NCHW tensor -> NHWC numpy array."""
  return t.detach().cpu().numpy().transpose(0, 2, 3, 1)
