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

For every image and method the output folder gets
``images/<name>/<method>.npy`` (the raw map ``[H, W, C]`` of the explained
class, or ``[K, H, W, C]`` for ``--target all``) and
``images/<name>/<method>.png`` (image, heat map, blend, masked image), plus
``grid.png`` (method by image) and ``explain.json`` (the predictions, the
explained classes and every file written). ``<name>`` is the file's name
without its suffix; a name already taken (two ``cat.png`` in different
folders) gets ``_2``, ``_3``, ... in the order of the files (see
:func:`output_names`). Per-image folders sit under ``images/``, so no input
name can collide with ``grid.png`` or ``explain.json``.

``--out`` is checked (a new or empty folder, in a folder that can be
written) before anything is computed. The files are written to a temporary
folder beside ``--out`` and moved into place at the end, so an error (a full
disk included) leaves nothing half-written; the output folder gets the
user's umask. Images are read at their real bit depth (16-bit images are
scaled to 8 bits, not saturated); images over PIL's pixel limit are refused
with their size named.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import threading
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
    ValueError: no images, ``batch_size`` not a positive int, or a method
      gave a non-finite map (before anything is written; under ``jit`` the
      methods give NaN maps for infinite inputs and out-of-range targets).
  """
  n = len(x)
  if n == 0:
    raise ValueError("x: no images to explain (a batch of 0 images)")
  from jaxsal import _checks

  _checks.check_positive_int(batch_size, "batch_size")
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


def _check_hparams(m, x: np.ndarray, methods: Sequence[str], hparams: dict) -> None:
  """Traces each method once on one image (shapes only, nothing computed) so that a bad
  hyperparameter fails before any work, named as ``--param METHOD.NAME`` would be."""
  k = len(m.class_names)
  t = jnp.zeros((1,), jnp.int32)
  key = jax.random.split(jax.random.key(0), 1)
  for name in methods:
    given = hparams.get(name, {})
    try:
      fn = method_fn(name, _hparams(name, given, k), "one")
      jax.eval_shape(lambda p, x, t, key, fn=fn: fn(m.apply_fn, p, x, t, key), m.params, x, t, key)
    except (ValueError, TypeError) as e:
      if not given:
        raise
      names = ", ".join(f"{name}.{h}={v!r}" for h, v in given.items())
      raise ValueError(f"param {names}: {e}") from None


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


_BOMB_LOCK = threading.Lock()


def _too_large(path: str, limit: int | None) -> ValueError:
  """The error for an image over PIL's pixel limit, naming its width x height."""
  from PIL import Image

  size = "an unknown size"
  with _BOMB_LOCK:  # the limit is global: lift it only to read this header (no decoding)
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
      with Image.open(path) as im:
        size = f"{im.size[0]} x {im.size[1]} = {im.size[0] * im.size[1]} pixels"
    except Exception:  # the size is only for the message
      pass
    finally:
      Image.MAX_IMAGE_PIXELS = saved
  return ValueError(
    f"image {path!r} is too large to read: {size}, over the limit of {limit} pixels "
    "(PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression bombs); "
    "give a smaller image, or raise that limit in Python if you trust the file"
  )


def _to_uint8(path: str, a: np.ndarray, mode: str) -> np.ndarray:
  """A high-bit-depth or float image's values scaled to [0, 255] from their real range."""
  if a.dtype.kind == "f":
    if not np.all(np.isfinite(a)):
      raise ValueError(
        f"image {path!r} has NaN or inf values (mode {mode!r}); give an image with finite values"
      )
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
      raise ValueError(
        f"image {path!r} has float values in [{lo:g}, {hi:g}] (mode {mode!r}); "
        "expected [0, 1] or [0, 255]"
      )
    scale = 255.0 if hi <= 1.0 else 1.0
    return np.round(a.astype(np.float64) * scale).astype(np.uint8)
  # 16-bit samples (PIL's 'I;16*' modes, and 16-bit PNGs that PIL opens as
  # 'I'): 65535 is white, so divide by 257 (= 65535 / 255).
  lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
  if lo < 0 or hi > 65535:
    raise ValueError(
      f"image {path!r} has integer values in [{lo}, {hi}] (mode {mode!r}); "
      "expected 8- or 16-bit samples in [0, 65535]"
    )
  return np.round(a.astype(np.float64) / 257.0).astype(np.uint8)


def read_image(path: str) -> np.ndarray:
  """A file as a uint8 RGB array ``[H, W, 3]``, from its real range of values.

  8-bit images are converted to RGB as PIL does; 16-bit images (PIL modes
  ``I;16*``, and ``I`` as PIL opens 16-bit PNGs) are scaled from
  ``[0, 65535]`` (divided by 257); float images (mode ``F``) from ``[0, 1]``
  (or ``[0, 255]`` when their maximum is above 1).

  Raises:
    ValueError: not an image PIL can read; an image over PIL's pixel limit
      (``PIL.Image.MAX_IMAGE_PIXELS``, a decompression-bomb guard: the
      message names the size and the limit); a float image with NaN or inf
      values, or values outside the range of its kind.
  """
  import warnings

  from PIL import Image, UnidentifiedImageError

  try:
    with warnings.catch_warnings():
      # PIL only warns between the limit and twice the limit: refuse both alike.
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(path) as im:
        mode = im.mode
        if mode.startswith("I;16") or mode in ("I", "F"):
          a = np.asarray(im)
          if a.ndim == 3:  # a 16-bit mode with more than one band
            a = a[..., 0]
          g = _to_uint8(path, a, mode)
          return np.repeat(g[..., None], 3, axis=-1)
        return np.asarray(im.convert("RGB"))
  except (Image.DecompressionBombError, Image.DecompressionBombWarning):
    raise _too_large(path, Image.MAX_IMAGE_PIXELS) from None
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
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero std is refused by explain
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
  _check_classifier_workdir(spec)
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


def _check_classifier_workdir(spec: str) -> None:
  """A ValueError saying what the workdir ``spec`` holds unless it is a classifier's.

  ``jaxsal train`` writes ``config.json`` with ``model.name`` (the
  classifier); a masker's config has ``mode`` and ``masker`` (written by
  ``jaxsal train-masker``), a generator's a ``model`` without a name.
  """
  expected = (
    "--model expects a classifier workdir (written by jaxsal train) or ARCH:FILE "
    "(e.g. resnet50:resnet50.safetensors)"
  )
  path = os.path.join(spec, "config.json")
  if not os.path.isfile(path):
    raise ValueError(
      f"model {spec!r} is not a jaxsal classifier workdir: it has no config.json; {expected}"
    )
  try:
    with open(path) as fh:
      config = json.load(fh)
  except (OSError, ValueError) as e:
    raise ValueError(f"model {spec!r}: its config.json cannot be read ({e}); {expected}") from None
  if not isinstance(config, dict):
    raise ValueError(f"model {spec!r}: its config.json is not a config (a JSON object); {expected}")
  model = config.get("model")
  if "mode" in config or "masker" in config:
    where = config.get("classifier_workdir") or ""
    hint = f"; its classifier is in {where!r}" if where else ""
    raise ValueError(
      f"model {spec!r} is a masker workdir (written by jaxsal train-masker; config mode "
      f"{config.get('mode')!r}), not a classifier{hint}; {expected}"
    )
  if isinstance(model, dict) and "latent_dim" in model:
    raise ValueError(
      f"model {spec!r} is a generator workdir (written by jaxsal train-generator; a VAE "
      f"with latent_dim {model['latent_dim']}), not a classifier; {expected}"
    )
  if not isinstance(model, dict) or not isinstance(model.get("name"), str):
    raise ValueError(
      f"model {spec!r} is not a jaxsal classifier workdir: its config.json has no model.name "
      f"(top-level keys: {', '.join(sorted(config)) or 'none'}); {expected}"
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


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _check_out(out: str) -> None:
  """A ValueError unless ``out`` is a new or empty folder whose parent can hold it."""
  if os.path.isfile(out) or (os.path.exists(out) and not os.path.isdir(out)):
    raise ValueError(f"out {out!r} is an existing file; give a new or empty folder")
  if os.path.isdir(out) and os.listdir(out):
    raise ValueError(f"out {out!r} exists and is not an empty folder; choose a new one")
  parent = os.path.dirname(os.path.abspath(out))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ValueError(f"out {out!r}: {parent!r} is a file, not a folder; give another --out")


def _make_tmp(out: str) -> tuple[str, list[str]]:
  """The temporary folder beside ``out`` and the parent folders made for it (innermost first)."""
  parent = os.path.dirname(os.path.abspath(out))
  made = []
  p = parent
  while not os.path.exists(p):
    made.append(p)
    p = os.path.dirname(p)
  try:
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=".jaxsal-explain-", dir=parent), made
  except OSError as e:
    for d in made:
      with contextlib.suppress(OSError):
        os.rmdir(d)
    raise ValueError(
      f"out {out!r} cannot be written: {e.strerror or e} ({parent!r}); "
      "give a folder you can write to"
    ) from None


def output_names(files: Sequence[str]) -> list[str]:
  """Each file's folder name under ``out/images/``: its stem, made unique.

  A stem already taken (two ``cat.png`` in different folders; ``Cat`` and
  ``cat`` on a case-insensitive disk) gets ``_2``, ``_3``, ... in file order.
  The per-image folders live under ``images/``, so no file name can collide
  with ``grid.png`` or ``explain.json``.
  """
  names: list[str] = []
  taken: set[str] = set()
  for f in files:
    stem = os.path.splitext(os.path.basename(f))[0]
    if stem in ("", ".", ".."):
      stem = "image"
    name, i = stem, 1
    while name.casefold() in taken:
      i += 1
      name = f"{stem}_{i}"
    taken.add(name.casefold())
    names.append(name)
  return names


def _write(tmp, files, stems, views, logits, maps, methods, mode, targets, m, used, t0):
  """The maps, figures, grid and summary of ``explain`` in ``tmp``; the summary."""
  from jaxsal import figures

  written = []
  for i, stem in enumerate(stems):
    folder = os.path.join("images", stem)
    os.makedirs(os.path.join(tmp, folder))
    for name in methods:
      arr = maps[name][:, i] if mode == "all" else maps[name][i]
      np.save(os.path.join(tmp, folder, f"{name}.npy"), arr)
      shown = int(logits[i].argmax()) if mode == "all" else int(targets[i])
      panel = arr[shown] if mode == "all" else arr
      figures.overlay_panel(
        views[i],
        panel,
        title=f"{name}: {m.class_names[shown]}",
        path=os.path.join(tmp, folder, f"{name}.png"),
      )
      written += [os.path.join(folder, f"{name}.npy"), os.path.join(folder, f"{name}.png")]
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
        "folder": os.path.join("images", s),
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
  return summary


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
    out: the output folder; it must not exist or be empty, and its parent
      must be writable (checked before anything is computed).
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

  Raises:
    ValueError: bad methods, hyperparameters, ``batch_size``, ``size`` or
      target; ``out`` an existing file, a non-empty folder or not writable;
      no images; a file that is not a readable image (or is over PIL's
      pixel limit); ``model`` not a classifier; an image not finite after
      normalisation; a method's non-finite maps; a write that fails (a full
      disk). Nothing is left behind then: no ``out``, no temporary folder.
    FileNotFoundError: a missing image path, workdir or weights file.
  """
  from jaxsal import _checks

  methods = check_methods(methods)
  hparams = parse_params(params, methods)
  _checks.check_positive_int(batch_size, "batch_size")
  _checks.check_positive_int(size, "size")
  _check_out(out)
  files = find_images(images)
  pictures = [read_image(f) for f in files]  # every file is read before anything is computed
  m = model if isinstance(model, Model) else load_model(model, size=size)
  if target not in (None, "pred", "all"):
    _target(target, np.zeros((1, len(m.class_names))))  # a bad index fails before the work
  stems = output_names(files)

  t0 = time.perf_counter()
  views = np.stack([m.view(p) for p in pictures])
  x_all = m.normalize(views)
  finite = np.isfinite(x_all).reshape(len(files), -1).all(1)
  if not finite.all():
    raise ValueError(
      f"image {files[int(np.argmin(finite))]!r} is not finite after the model's normalisation "
      f"(mean {m.mean.tolist()}, std {m.std.tolist()}); nothing was written"
    )
  _check_hparams(m, x_all[:1], methods, hparams)
  # The temporary folder is made before the work: an --out that cannot be
  # written fails now, not after every map has been computed.
  tmp, made = _make_tmp(out)
  try:
    logits_fn = jax.jit(m.apply_fn)
    logits = np.concatenate(
      [
        np.asarray(logits_fn(m.params, x_all[i : i + batch_size]))
        for i in range(0, len(files), batch_size)
      ]
    )
    mode, targets = _target(target, logits)
    k = logits.shape[1]
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
    try:
      summary = _write(tmp, files, stems, views, logits, maps, methods, mode, targets, m, used, t0)
    except OSError as e:
      raise ValueError(
        f"out {out!r}: could not write the outputs ({e.strerror or e}"
        + (", the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "")
        + "); nothing was written"
      ) from None
    if os.path.isdir(out):
      os.rmdir(out)  # empty, checked above
    os.replace(tmp, out)
    # mkdtemp makes a private (0o700) folder: give the output the user's umask.
    os.chmod(out, 0o777 & ~_umask())
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    for d in made:  # the parent folders made for --out, innermost first
      with contextlib.suppress(OSError):
        os.rmdir(d)
    raise
  summary["out"] = os.path.abspath(out)
  return summary
