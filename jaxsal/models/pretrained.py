"""torchvision ResNet weights, from a file the user already has, as jaxsal ResNet variables.

Nothing is downloaded. A ``.safetensors`` file is read with the
``safetensors`` package's numpy loader (no torch needed); a PyTorch file
(``.pth``/``.pt``/``.bin``) with ``torch.load(..., weights_only=True)``, which
refuses to unpickle anything but tensors and plain containers. The key
mapping is the one documented in :mod:`jaxsal.models.resnet`; every key of
the file must map to a parameter of the chosen architecture and every
parameter must be present, with its shape, or nothing is returned and the
error lists the offending keys.

Example (the file comes from the user, e.g. saved from torchvision)::

    from jaxsal import models
    from jaxsal.models import pretrained
    model, variables = pretrained.load_torchvision_resnet('resnet50', 'resnet50.safetensors')
    logits = model.apply(variables, pretrained.imagenet_normalize(images_in_0_1))
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxsal.models import resnet

ARCHITECTURES = {
  "resnet18": resnet.ResNet18,
  "resnet34": resnet.ResNet34,
  "resnet50": resnet.ResNet50,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_BN = {
  "weight": ("params", "scale"),
  "bias": ("params", "bias"),
  "running_mean": ("batch_stats", "mean"),
  "running_var": ("batch_stats", "var"),
}


def imagenet_normalize(x: Any) -> Any:
  """Maps NHWC RGB images in [0, 1] to torchvision's ImageNet input: ``(x - mean) / std``.

  Example:
    >>> import numpy as np
    >>> np.round(imagenet_normalize(np.full((1, 1, 1, 3), 0.5))[0, 0, 0], 3)
    array([0.066, 0.196, 0.418])
  """
  return (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)


def imagenet_class_names(*, short: bool = False) -> list[str]:
  """The 1000 ImageNet-1k class names, in the order of torchvision's logits.

  They are read from the copy that ships inside tensorflow-datasets (a
  dependency of jaxsal), so no network is needed; TensorFlow is not imported.

  Args:
    short: keep only the first of each class's synonyms (``'tabby'`` instead
      of ``'tabby, tabby cat'``).

  Raises:
    RuntimeError: the installed tensorflow-datasets has no such list.

  Example:
    >>> imagenet_class_names(short=True)[281]
    'tabby'
  """
  try:
    from tensorflow_datasets.datasets.siscore import labels

    names = list(labels.IMAGENET_LABELS_LIST)
  except (ImportError, AttributeError) as e:
    raise RuntimeError(
      "the ImageNet class names are read from tensorflow-datasets "
      "(tensorflow_datasets.datasets.siscore.labels.IMAGENET_LABELS_LIST), "
      f"which this installation lacks ({e})"
    ) from e
  if len(names) != 1000:
    raise RuntimeError(
      f"expected 1000 ImageNet class names from tensorflow-datasets; got {len(names)}"
    )
  return [n.split(",")[0].strip() for n in names] if short else names


def _flax_path(key: str) -> tuple[str, tuple[str, ...], str] | None:
  """``(collection, module path, leaf kind)`` of a torchvision key, or None if it has none.

  The leaf kind is ``conv``, ``linear_w``, ``linear_b`` or the Flax leaf name
  of a BatchNorm entry.
  """
  parts = key.split(".")
  if key == "conv1.weight":
    return "params", ("conv1",), "conv"
  if key in ("fc.weight", "fc.bias"):
    return "params", ("fc",), "linear_w" if parts[1] == "weight" else "linear_b"
  if len(parts) == 2 and parts[0] == "bn1" and parts[1] in _BN:
    coll, leaf = _BN[parts[1]]
    return coll, ("bn1",), leaf
  m = re.fullmatch(r"layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.0|downsample\.1)\.(\w+)", key)
  if not m:
    return None
  block = f"layer{m.group(1)}_{m.group(2)}"
  layer, leaf = m.group(3), m.group(4)
  if layer.startswith("conv") or layer == "downsample.0":
    if leaf != "weight":
      return None
    return "params", (block, "downsample_conv" if layer == "downsample.0" else layer), "conv"
  if leaf not in _BN:
    return None
  coll, flax_leaf = _BN[leaf]
  return coll, (block, "downsample_bn" if layer == "downsample.1" else layer), flax_leaf


def _expected_leaves(arch: str, num_classes: int) -> dict[tuple[str, ...], tuple[int, ...]]:
  import jax
  import jax.numpy as jnp

  model = ARCHITECTURES[arch](num_classes=num_classes)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  out = {}
  for coll in ("params", "batch_stats"):
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes[coll])[0]:
      out[(coll,) + tuple(p.key for p in path)] = tuple(leaf.shape)
  return out


def _list(keys, limit: int = 12) -> str:
  keys = sorted(keys)
  more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
  return ", ".join(keys[:limit]) + more


def resnet_variables_from_torchvision(
  state_dict: Mapping[str, Any], arch: str, *, num_classes: int | None = None
) -> dict[str, Any]:
  """Converts a torchvision ResNet state dict into jaxsal ``ResNet`` variables.

  Args:
    state_dict: torchvision key -> array (numpy arrays or torch tensors).
      ``num_batches_tracked`` entries are ignored.
    arch: ``'resnet18'``, ``'resnet34'`` or ``'resnet50'``.
    num_classes: logits of the model; by default the rows of ``fc.weight``.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` (float32 numpy leaves) for
    ``ARCHITECTURES[arch](num_classes)``, whose ``apply`` on NHWC images
    gives the torchvision model's logits on the same NCHW images.

  Raises:
    ValueError: an unknown ``arch``; keys of the file that the architecture
      does not have, parameters that the file lacks, or shapes that differ
      (each listed).

  Example:
    >>> import numpy as np
    >>> variables = resnet_variables_from_torchvision({}, 'resnet18')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the state dict does not fit resnet18: missing keys (...): bn1.bias, ...
  """
  if arch not in ARCHITECTURES:
    raise ValueError(f"arch must be one of {', '.join(sorted(ARCHITECTURES))}; got {arch!r}")
  arrays = {}
  for key, value in state_dict.items():
    if key.endswith("num_batches_tracked"):
      continue
    if hasattr(value, "detach"):  # a torch tensor
      value = value.detach().cpu().numpy()
    arrays[str(key)] = np.asarray(value, np.float32)
  if num_classes is None:
    num_classes = arrays["fc.weight"].shape[0] if "fc.weight" in arrays else 1000
  expected = _expected_leaves(arch, int(num_classes))

  converted: dict[tuple[str, ...], np.ndarray] = {}
  extra, wrong_shape, misshaped = [], [], set()
  for key, value in arrays.items():
    where = _flax_path(key)
    if where is None:
      extra.append(key)
      continue
    coll, module, kind = where
    if kind == "conv":
      leaf, value = "kernel", value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
    elif kind == "linear_w":
      leaf, value = "kernel", value.T
    elif kind == "linear_b":
      leaf = "bias"
    else:
      leaf = kind
    path = (coll,) + module + (leaf,)
    if path not in expected:
      extra.append(key)
    elif tuple(value.shape) != expected[path]:
      wrong_shape.append(
        f"{key} {tuple(arrays[key].shape)} (as {'/'.join(path)}: "
        f"{tuple(value.shape)}, expected {expected[path]})"
      )
      misshaped.add(path)
    else:
      converted[path] = np.ascontiguousarray(value)
  missing = [_torch_key(p) for p in expected if p not in converted and p not in misshaped]
  problems = []
  if missing:
    problems.append(f"missing keys ({len(missing)}): {_list(missing)}")
  if extra:
    problems.append(f"unexpected keys ({len(extra)}): {_list(extra)}")
  if wrong_shape:
    problems.append(
      f"keys whose shape differs from {arch}'s ({len(wrong_shape)}): {_list(wrong_shape)}"
    )
  if problems:
    raise ValueError(f"the state dict does not fit {arch}: " + "; ".join(problems))

  variables: dict[str, Any] = {"params": {}, "batch_stats": {}}
  for path, value in converted.items():
    node = variables
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = value
  return variables


def _torch_key(path: tuple[str, ...]) -> str:
  """The torchvision key of a Flax leaf path (the inverse of :func:`_flax_path`)."""
  coll, *module, leaf = path
  inverse_bn = {v: k for k, v in _BN.items()}
  if module == ["fc"]:
    return "fc.weight" if leaf == "kernel" else "fc.bias"
  if module[0].startswith("layer"):
    stage, block = module[0][len("layer") :].split("_")
    name = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(
      module[1], module[1]
    )
    prefix = f"layer{stage}.{block}.{name}"
  else:
    prefix = module[0]
  suffix = "weight" if leaf == "kernel" else inverse_bn[(coll, leaf)]
  return f"{prefix}.{suffix}"


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a state dict of arrays from a ``.safetensors`` or PyTorch file, without unpickling code.

  Args:
    path: a ``.safetensors`` file, or a ``.pth``/``.pt``/``.bin`` file written
      by ``torch.save(model.state_dict())`` (read with ``weights_only=True``).

  Returns:
    key -> float32 numpy array.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file cannot be read as a state dict (the reason is given),
      or torch is needed and not installed.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"weights file {path!r} does not exist")
  if path.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file
    except ImportError as e:
      raise ValueError(
        "reading .safetensors needs the safetensors package: pip install safetensors"
      ) from e
    try:
      return {k: np.asarray(v, np.float32) for k, v in load_file(path).items()}
    except Exception as e:  # safetensors raises its own error types
      raise ValueError(f"{path!r} is not a readable safetensors file: {e}") from e
  try:
    import torch
  except ImportError as e:
    raise ValueError(
      f"reading {path!r} needs torch (pip install 'jaxsal[torch]'), or convert it to .safetensors"
    ) from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:
    raise ValueError(
      f"{path!r} is not a PyTorch state dict that loads with weights_only=True "
      f"(jaxsal never unpickles arbitrary objects): {e}"
    ) from e
  if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
    obj = obj["state_dict"]
  if not isinstance(obj, Mapping) or not all(hasattr(v, "detach") for v in obj.values()):
    raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a state dict of tensors")
  return {str(k): v.detach().cpu().numpy().astype(np.float32) for k, v in obj.items()}


def load_torchvision_resnet(arch: str, path: str, *, num_classes: int | None = None):
  """A jaxsal ResNet and its variables from a torchvision weights file.

  Args:
    arch: ``'resnet18'``, ``'resnet34'`` or ``'resnet50'``.
    path: a ``.safetensors`` or PyTorch state-dict file (see
      :func:`load_state_dict`).
    num_classes: by default the rows of the file's ``fc.weight``.

  Returns:
    ``(model, variables)``; the model expects NHWC images normalised with
    :func:`imagenet_normalize`.
  """
  variables = resnet_variables_from_torchvision(
    load_state_dict(path), arch, num_classes=num_classes
  )
  return ARCHITECTURES[arch](num_classes=variables["params"]["fc"]["kernel"].shape[1]), variables
