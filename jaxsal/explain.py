"""Explain a classifier's decisions on image files: the engine behind ``jaxsal explain``.

From the command line::

    jaxsal explain cat.png coffee.jpg --model resnet50:resnet50.safetensors \\
        --methods gradient integrated_gradients gradcam --out explained/
    jaxsal explain photos/ --model runs/small_cnn --target all --out explained/

The model is a jaxsal classifier workdir (written by ``jaxsal train``), or
``ARCH:FILE`` with torchvision ResNet weights (``resnet18``, ``resnet34``,
``resnet50``; a ``.safetensors`` or weights-only PyTorch file, converted by
:mod:`jaxsal.models.pretrained`). Images are resized as the model expects:
to the workdir's training size (and its channels), or, for torchvision
weights, shorter side to ``size / 0.875`` and the central ``size x size``
crop, normalised with ImageNet's mean and standard deviation.

The methods are those of ``jaxsal.attribution.get_method`` (all 14, CGI and
VAR included), with its defaults; ``params`` (``--param METHOD.NAME=VALUE``)
changes any of them.

For every image and method the output folder gets ``<image>/<method>.npy``
(the raw map ``[H, W, C]`` of the explained class, or ``[K, H, W, C]`` for
``--target all``) and ``<image>/<method>.png`` (image, heat map, blend,
masked image), plus ``grid.png`` (method by image) and ``explain.json`` (the
predictions, the explained classes and every file written). The files are
written to a temporary folder beside ``--out`` and moved into place at the
end, so an error leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# Classes explained at a time by the class-comparing methods (CGI over 1000
# ImageNet classes at 224x224 would otherwise hold every class's map at once).
CLASS_CHUNK = 25


def known_methods() -> list[str]:
  """The method names ``explain`` accepts, sorted: every method of ``jaxsal.attribution.get_method``."""
  from jaxsal import attribution as A

  return sorted(A.method_names())


def check_methods(methods: Sequence[str]) -> list[str]:
  """``methods`` as a list, or a ValueError naming the unknown ones and listing the known."""
  methods = list(methods)
  if not methods:
    raise ValueError(f"methods: give at least one; known methods: {', '.join(known_methods())}")
  unknown = [m for m in methods if m not in known_methods()]
  if unknown:
    raise ValueError(
      f"unknown method{'s' if len(unknown) > 1 else ''} "
      f"{', '.join(repr(m) for m in unknown)}; known methods: "
      f"{', '.join(known_methods())}"
    )
  return methods


def parse_params(
  params: Sequence[str] | Mapping[str, Mapping[str, Any]] | None, methods: Sequence[str]
) -> dict[str, dict[str, Any]]:
  """``METHOD.NAME=VALUE`` strings (or a ``{method: {name: value}}`` dict) as a checked dict.

  Values are Python literals (``64``, ``0.3``, ``'l3'``, ``None``), else strings.
  Each entry must name one of ``methods`` and a hyperparameter that method
  takes (``jaxsal.attribution.method_hparams``).
  """
  from jaxsal import attribution as A
  from jaxsal.configs._loading import _parse_value

  out: dict[str, dict[str, Any]] = {}
  if isinstance(params, Mapping):
    items = [(m, k, v) for m, kv in params.items() for k, v in dict(kv).items()]
  else:
    items = []
    for text in params or ():
      key, eq, value = str(text).partition("=")
      method, dot, name = key.partition(".")
      if not eq or not dot or not method or not name:
        raise ValueError(
          f"param {text!r}: expected METHOD.NAME=VALUE, e.g. integrated_gradients.steps=64"
        )
      items.append((method, name, _parse_value(value)))
  for method, name, value in items:
    if method not in methods:
      raise ValueError(
        f"param {method}.{name}: {method!r} is not among the methods asked for "
        f"({', '.join(methods)})"
      )
    if name not in A.method_hparams(method):
      raise ValueError(
        f"param {method}.{name}: {method!r} takes no {name!r}; it takes: "
        f"{', '.join(A.method_hparams(method)) or 'nothing'}"
      )
    out.setdefault(method, {})[name] = value
  return out


def _hparams(name: str, given: dict[str, Any], num_classes: int) -> dict[str, Any]:
  """``name``'s hyperparameters in ``explain``: the registry's defaults, explain's, then ``given``."""
  from jaxsal import attribution as A

  h = {**A.method_defaults(name), **given}
  if name in ("cgi", "var") and num_classes > CLASS_CHUNK and "chunk_size" not in given:
    h["chunk_size"] = CLASS_CHUNK
  return h


def method_fn(name: str, h: dict[str, Any], mode: str) -> Callable:
  """``fn(apply_fn, params, x, target, key)``; for ``mode == 'all'``, ``[K, B, ...]`` maps.

  With ``all``, methods that explain many classes at once do so through
  ``all_classes`` (RISE's shared forward passes; CGI's one set of class maps).
  """
  from jaxsal import attribution as A

  fn = A.get_method(name, **h)
  if mode == "all":
    every = A.all_classes(fn, chunk_size=16)
    return lambda af, p, x, t, key: every(af, p, x, key=key)
  return lambda af, p, x, t, key: fn(af, p, x, t, key=key)


def compute_maps(
  apply_fn: Callable,
  params: Any,
  x: np.ndarray,
  fns: dict[str, Callable],
  targets: np.ndarray | None,
  *,
  keys: jax.Array,
  batch_size: int,
  many_classes: bool = False,
  progress: bool = False,
  desc: str = "explain",
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
  """Every method's maps of ``x``, one compiled call per method and batch.

  Args:
    apply_fn, params: the classifier.
    x: ``[N, H, W, C]`` model inputs.
    fns: name -> ``fn(apply_fn, params, x, target, key)`` (``method_fn``'s).
    targets: int ``[N]``, or None where every class is explained.
    keys: ``[N]`` typed keys, image ``i``'s noise from ``keys[i]``.
    batch_size: images per call.
    many_classes: the maps are ``[K, B, ...]`` (all classes): batches are
      joined along axis 1.
    progress: a progress bar and a line per method.
    desc: the progress bar's label.

  Returns:
    ``({name: float32 maps}, {name: seconds})``.

  Raises:
    ValueError: a method gave a non-finite map (before anything is written).
  """
  n = len(x)
  starts = list(range(0, n, batch_size))
  bar = tqdm(
    total=len(fns) * len(starts), desc=desc, unit="batch", disable=not progress, dynamic_ncols=True
  )
  maps: dict[str, np.ndarray] = {}
  seconds: dict[str, float] = {}
  for name, fn in fns.items():
    t1 = time.perf_counter()
    bar.set_postfix_str(name)
    call = jax.jit(lambda p, x, t, key, fn=fn: fn(apply_fn, p, x, t, key))
    parts = []
    for i in starts:
      t = None if targets is None else jnp.asarray(targets[i : i + batch_size])
      batch = jnp.asarray(x[i : i + batch_size])
      parts.append(np.asarray(call(params, batch, t, keys[i : i + batch_size]), np.float32))
      bar.update(1)
    maps[name] = np.concatenate(parts, axis=1 if many_classes else 0)
    seconds[name] = time.perf_counter() - t1
    if not np.all(np.isfinite(maps[name])):
      bar.close()
      raise ValueError(f"{name} gave non-finite maps (NaN or inf); nothing was written")
    if progress:
      bar.write(f"jaxsal {desc}: {name} on {n} images in {seconds[name]:.1f}s")
  bar.close()
  return maps, seconds


def find_images(paths: Sequence[str]) -> list[str]:
  """Image files from files and folders (a folder's PNG/JPEG files, sorted, not recursive).

  Raises:
    FileNotFoundError: a path that does not exist.
    ValueError: no paths, or a folder without PNG or JPEG images.
  """
  if not paths:
    raise ValueError("images: give at least one image file or folder")
  files = []
  for p in paths:
    if os.path.isdir(p):
      found = sorted(
        os.path.join(p, f)
        for f in os.listdir(p)
        if f.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(p, f))
      )
      if not found:
        raise ValueError(f"the folder {p!r} has no images ({', '.join(IMAGE_SUFFIXES)} files)")
      files += found
    elif os.path.isfile(p):
      files.append(p)
    else:
      raise FileNotFoundError(f"image path {p!r} does not exist")
  return files


def read_image(path: str) -> np.ndarray:
  """A file as a uint8 RGB array ``[H, W, 3]``; a ValueError if it is not an image."""
  from PIL import Image, UnidentifiedImageError

  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise ValueError(f"{path!r} is not an image that PIL can read ({e})") from e


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
  from PIL import Image

  return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


class Model:
  """A classifier ready for ``explain``: ``apply_fn``, ``params``, preprocessing, class names."""

  def __init__(
    self,
    apply_fn,
    params,
    *,
    size: tuple[int, int],
    channels: int,
    mean,
    std,
    class_names: Sequence[str],
    crop: bool,
    description: str,
  ):
    self.apply_fn, self.params = apply_fn, params
    self.size, self.channels, self.crop = size, channels, crop
    self.mean = np.asarray(mean, np.float32)
    self.std = np.asarray(std, np.float32)
    self.class_names = list(class_names)
    self.description = description

  def view(self, image: np.ndarray) -> np.ndarray:
    """The uint8 RGB file image as the model sees it, in [0, 1] (before normalisation)."""
    h, w = self.size
    if self.crop:
      from jaxsal.data import EvalTransform

      image = EvalTransform(h).map({"image": image, "label": 0})["image"]
    else:
      image = _resize(image, h, w)
    image = image.astype(np.float32) / 255.0
    if self.channels == 1:
      image = image.mean(-1, keepdims=True)
    return image

  def normalize(self, views: np.ndarray) -> np.ndarray:
    return (views - self.mean) / self.std


def load_model(spec: str, *, size: int = 224) -> Model:
  """A jaxsal classifier workdir, or ``ARCH:FILE`` with torchvision ResNet weights.

  Raises:
    ValueError: a spec that is neither; a weights file that does not fit.
    FileNotFoundError: a missing workdir or file.
    jaxsal.train.CheckpointError: a workdir whose checkpoint is of another model.
  """
  from jaxsal import models
  from jaxsal.models import pretrained

  arch, sep, path = spec.partition(":")
  if sep and arch in pretrained.ARCHITECTURES:
    model, variables = pretrained.load_torchvision_resnet(arch, path)
    apply_fn, params = models.from_linen(model, jax.tree.map(jnp.asarray, variables))
    k = variables["params"]["fc"]["kernel"].shape[1]
    names = (
      pretrained.imagenet_class_names(short=True) if k == 1000 else [f"class {i}" for i in range(k)]
    )
    return Model(
      apply_fn,
      params,
      size=(size, size),
      channels=3,
      mean=pretrained.IMAGENET_MEAN,
      std=pretrained.IMAGENET_STD,
      class_names=names,
      crop=True,
      description=f"{arch} from {path}",
    )
  if sep and not os.path.isdir(spec):
    raise ValueError(
      f"model {spec!r}: ARCH:FILE needs ARCH in "
      f"{', '.join(sorted(pretrained.ARCHITECTURES))}; got {arch!r}"
    )
  if not os.path.isdir(spec):
    raise FileNotFoundError(
      f"model {spec!r} is neither a jaxsal classifier workdir nor "
      f"ARCH:FILE (e.g. resnet50:resnet50.safetensors)"
    )
  from jaxsal import train

  c = train.load_classifier(spec)
  apply_fn, params = models.from_linen(c["model"], jax.tree.map(jnp.asarray, c["variables"]))
  h, w, ch = c["image_shape"]
  return Model(
    apply_fn,
    params,
    size=(h, w),
    channels=ch,
    mean=c["mean"],
    std=c["std"],
    class_names=c["class_names"],
    crop=False,
    description=f"{c['config'].model.name} from {spec} (step {c['step']})",
  )


def _target(target: Any, logits: np.ndarray) -> tuple[str, np.ndarray | None]:
  """('pred' | 'class' | 'all', int [B] targets or None)."""
  k = logits.shape[1]
  if target in (None, "pred"):
    return "pred", logits.argmax(1).astype(np.int32)
  if target == "all":
    return "all", None
  try:
    c = int(target)
  except (TypeError, ValueError):
    raise ValueError(
      f"target must be 'pred', 'all' or a class index in [0, {k}); got {target!r}"
    ) from None
  if not 0 <= c < k:
    raise ValueError(f"target must be a class index in [0, {k}); got {c}")
  return "class", np.full((logits.shape[0],), c, np.int32)


def explain(
  images: Sequence[str],
  model: str | Model,
  methods: Sequence[str],
  *,
  out: str,
  target: Any = "pred",
  size: int = 224,
  batch_size: int = 8,
  seed: int = 0,
  params: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
  progress: bool = True,
) -> dict[str, Any]:
  """Explains ``model`` on image files with ``methods``; writes maps and figures under ``out``.

  Args:
    images: image files and folders.
    model: a :class:`Model`, a classifier workdir or ``ARCH:FILE`` (see :func:`load_model`).
    methods: names from :func:`known_methods`.
    out: the output folder; it must not exist or be empty.
    target: ``'pred'`` (the predicted class), a class index, or ``'all'``.
    size: the side for torchvision weights (ignored for workdirs).
    batch_size: images per compiled call.
    seed: for the methods that draw noise (SmoothGrad, RISE, the optimised mask);
      image ``j`` of the files gets ``fold_in(key(seed), j)``.
    params: method hyperparameters over the defaults of
      ``jaxsal.attribution.get_method``: ``METHOD.NAME=VALUE`` strings
      (``integrated_gradients.steps=64``) or ``{method: {name: value}}``.
    progress: a progress bar over methods and batches, and a line per method.

  Returns:
    The summary also written to ``out/explain.json``.
  """
  from jaxsal import _checks, figures

  methods = check_methods(methods)
  hparams = parse_params(params, methods)
  _checks.check_positive_int(batch_size, "batch_size")
  _checks.check_positive_int(size, "size")
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise ValueError(f"out {out!r} exists and is not an empty folder; choose a new one")
  files = find_images(images)
  pictures = [read_image(f) for f in files]  # every file is read before anything is computed
  m = model if isinstance(model, Model) else load_model(model, size=size)
  if target not in (None, "pred", "all"):
    _target(target, np.zeros((1, len(m.class_names))))  # a bad index fails before the work

  t0 = time.perf_counter()
  views = np.stack([m.view(p) for p in pictures])
  x_all = m.normalize(views)
  logits_fn = jax.jit(m.apply_fn)
  logits = np.concatenate(
    [
      np.asarray(logits_fn(m.params, x_all[i : i + batch_size]))
      for i in range(0, len(files), batch_size)
    ]
  )
  mode, targets = _target(target, logits)
  k = logits.shape[1]
  maps: dict[str, np.ndarray] = {}
  used = {n: _hparams(n, hparams.get(n, {}), k) for n in methods}
  fns = {n: method_fn(n, used[n], mode) for n in methods}  # bad hyperparameters fail here
  # One key per image, from its position among the files: the noise an image
  # gets does not depend on the batch it falls in (RISE's shared masks take
  # the batch's first key).
  keys = jax.vmap(lambda j: jax.random.fold_in(jax.random.key(seed), j))(jnp.arange(len(files)))
  maps, _ = compute_maps(
    m.apply_fn,
    m.params,
    x_all,
    fns,
    targets,
    keys=keys,
    batch_size=batch_size,
    many_classes=mode == "all",
    progress=progress,
  )

  parent = os.path.dirname(os.path.abspath(out)) or "."
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".jaxsal-explain-", dir=parent)
  try:
    written, stems = [], []
    for i, f in enumerate(files):
      stem = os.path.splitext(os.path.basename(f))[0]
      while stem in stems:
        stem += "_"
      stems.append(stem)
      os.makedirs(os.path.join(tmp, stem))
      for name in methods:
        arr = maps[name][:, i] if mode == "all" else maps[name][i]
        np.save(os.path.join(tmp, stem, f"{name}.npy"), arr)
        shown = int(logits[i].argmax()) if mode == "all" else int(targets[i])
        panel = arr[shown] if mode == "all" else arr
        figures.overlay_panel(
          views[i],
          panel,
          title=f"{name}: {m.class_names[shown]}",
          path=os.path.join(tmp, stem, f"{name}.png"),
        )
        written += [os.path.join(stem, f"{name}.npy"), os.path.join(stem, f"{name}.png")]
    shown = logits.argmax(1) if mode == "all" else targets
    figures.method_grid(
      list(views),
      {
        n: [maps[n][int(shown[i]), i] if mode == "all" else maps[n][i] for i in range(len(files))]
        for n in methods
      },
      row_titles=[f"{s}: {m.class_names[int(c)]}" for s, c in zip(stems, shown)],
      path=os.path.join(tmp, "grid.png"),
    )
    written.append("grid.png")
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=1))
    summary = {
      "model": m.description,
      "methods": methods,
      "target": mode,
      "params": used,
      "seconds": time.perf_counter() - t0,
      "images": [
        {
          "file": os.path.abspath(f),
          "name": s,
          "predicted": int(logits[i].argmax()),
          "predicted_name": m.class_names[int(logits[i].argmax())],
          "probability": float(probs[i].max()),
          "explained": "all" if mode == "all" else int(targets[i]),
          "explained_name": ("all" if mode == "all" else m.class_names[int(targets[i])]),
        }
        for i, (f, s) in enumerate(zip(files, stems))
      ],
      "files": written + ["explain.json"],
    }
    with open(os.path.join(tmp, "explain.json"), "w") as fh:
      json.dump(summary, fh, indent=2)
    if os.path.isdir(out):
      os.rmdir(out)  # empty, checked above
    os.replace(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  summary["out"] = os.path.abspath(out)
  return summary
