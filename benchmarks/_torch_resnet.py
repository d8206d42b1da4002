"""ResNet-18/34/50 in PyTorch with torchvision's module names and state-dict keys.

torchvision's own wheel on PyPI is built against the CUDA torch and does not
load beside the CPU torch this project pins, so the benchmarks and tests
build the same architecture here: v1.5 bottlenecks (stride on the 3x3
convolution), ``downsample`` as ``Sequential(conv1x1, bn)``, Kaiming-normal
(fan-out) convolutions, BatchNorm weight 1 and bias 0. ``state_dict()`` has
exactly torchvision's keys, so :func:`jaxsal.models.pretrained.resnet_variables_from_torchvision`
reads it as it would read torchvision's file.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, cin: int, width: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.relu = nn.ReLU(inplace=False)
    self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.downsample = None
    if stride != 1 or cin != width:
      self.downsample = nn.Sequential(
        nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width)
      )

  def forward(self, x):
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin: int, width: int, stride: int):
    super().__init__()
    out = width * 4
    self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, out, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(out)
    self.relu = nn.ReLU(inplace=False)
    self.downsample = None
    if stride != 1 or cin != out:
      self.downsample = nn.Sequential(
        nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out)
      )

  def forward(self, x):
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
  """NCHW images -> logits; ``layer4`` is the module for Grad-CAM on jaxsal's tap ``l4``."""

  def __init__(self, block, stage_sizes, num_classes: int = 1000):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=False)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    cin = 64
    for s, n in enumerate(stage_sizes):
      blocks = []
      for i in range(n):
        blocks.append(block(cin, 64 * 2**s, 2 if s > 0 and i == 0 else 1))
        cin = 64 * 2**s * block.expansion
      setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(cin, num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


STAGES = {
  "resnet18": (BasicBlock, (2, 2, 2, 2)),
  "resnet34": (BasicBlock, (3, 4, 6, 3)),
  "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


def build(arch: str, num_classes: int = 1000, seed: int = 0, randomize_bn: bool = True) -> ResNet:
  """A ResNet in eval mode with seeded random weights.

  With ``randomize_bn`` the BatchNorm scales, shifts and running statistics
  are random too (mean ~ N(0, 0.1), var ~ U(0.5, 1.5), scale ~ U(0.5, 1.5),
  shift ~ N(0, 0.1)), so that a conversion that mixed them up would show.
  """
  torch.manual_seed(seed)
  block, stages = STAGES[arch]
  net = ResNet(block, stages, num_classes)
  if randomize_bn:
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
      for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
          n = m.num_features
          m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
          m.running_var.copy_(0.5 + torch.rand(n, generator=g))
          m.weight.copy_(0.5 + torch.rand(n, generator=g))
          m.bias.copy_(0.1 * torch.randn(n, generator=g))
  return net.eval()
