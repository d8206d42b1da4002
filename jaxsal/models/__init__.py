"""Classifiers with taps, a registry, and adapters to the apply_fn contract.

Every classifier here maps float NHWC images ``[B, H, W, C]`` to logits
``[B, num_classes]`` through ``apply_fn(params, x)``; ``from_linen``,
``from_nnx``, ``from_equinox`` and ``from_function`` bring other models to
the same contract.
"""

from jaxsal.models._taps import TappedApplyFn as TappedApplyFn
from jaxsal.models._taps import apply_with_taps as apply_with_taps
from jaxsal.models._taps import tap as tap
from jaxsal.models._taps import tap_names as tap_names
from jaxsal.models.adapters import from_equinox as from_equinox
from jaxsal.models.adapters import from_function as from_function
from jaxsal.models.adapters import from_linen as from_linen
from jaxsal.models.adapters import from_nnx as from_nnx
from jaxsal.models.masker import Masker as Masker
from jaxsal.models.registry import get_model as get_model
from jaxsal.models.registry import init_model as init_model
from jaxsal.models.registry import list_models as list_models
from jaxsal.models.resnet import ResNet as ResNet
from jaxsal.models.resnet import ResNet18 as ResNet18
from jaxsal.models.resnet import ResNet34 as ResNet34
from jaxsal.models.resnet import ResNet50 as ResNet50
from jaxsal.models.small_cnn import SmallCNN as SmallCNN

__all__ = [
  "Masker",
  "ResNet",
  "ResNet18",
  "ResNet34",
  "ResNet50",
  "SmallCNN",
  "TappedApplyFn",
  "apply_with_taps",
  "from_equinox",
  "from_function",
  "from_linen",
  "from_nnx",
  "get_model",
  "init_model",
  "list_models",
  "tap",
  "tap_names",
]
