"""The model-randomisation sanity checks (Adebayo et al. 2018) for a trained classifier.

For each mode (cascading, independent), the trained parameters and every
randomised stage are stacked into one tree; for each method one jitted,
vmapped call gives every stage's maps for a batch of images (each stage
explains its own argmax class, as the paper does); the similarity of each
stage's maps to the trained model's maps is then measured with the paper's
four numbers. Results: mean and standard deviation per stage, a figure of
the cascade of maps and one of the similarity curves.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxsal import attribution as A
from jaxsal import sanity
from jaxsal.experiments import _common

COMMAND = "sanity"
HELP = "model- and data-randomisation sanity checks of attribution methods"
DEFAULT_CONFIG = "sanity_digits"
CONFIG_HELP = "an experiment config (sanity_digits[:test]) or a .py path"
WORKDIR_HELP = "the classifier's workdir: trained there if it holds no checkpoint"
SET_EXAMPLE = "num_images=16"

MODES = ("cascading", "independent")


def stage_maps_fn(apply_fn: Callable, method: Callable, kwargs: dict) -> Callable:
  """``fn(stacked_params, x) -> [S, B, H, W, C]``: every stage's maps of its own argmax class."""

  def fn(stacked, x):
    def one(p):
      target = jnp.argmax(apply_fn(p, x), -1).astype(jnp.int32)
      return method(apply_fn, p, x, target, **kwargs)

    return jax.vmap(one)(stacked)

  return fn


def _similarities(maps: jax.Array, pixels_per_cell: int) -> dict[str, jax.Array]:
  """Each stage's maps (``maps[1:]``) against the trained model's (``maps[0]``): ``[S-1, B]`` each."""
  return jax.vmap(lambda m: sanity.similarity(maps[0], m, pixels_per_cell=pixels_per_cell))(
    maps[1:]
  )


def model_randomization(
  apply_fn: Callable,
  params: Any,
  images: np.ndarray,
  *,
  methods: dict[str, tuple[Callable, dict]],
  key: jax.Array,
  layers: list[str] | None = None,
  modes=MODES,
  batch_size: int = 16,
  keep: int = 4,
  pixels_per_cell: int = 16,
  progress: bool = True,
) -> dict[str, Any]:
  """Runs the cascading and independent randomisation tests.

  Args:
    apply_fn, params: the trained classifier.
    images: ``[N, H, W, C]`` model inputs.
    methods: name -> ``(method, kwargs)``.
    key: the randomisation key.
    layers: stage patterns in model order; default every layer in the order
      the program uses them (``sanity.model_order``).
    modes: which tests.
    batch_size: images per jitted call.
    keep: how many images' maps to keep for the cascade figure.
    pixels_per_cell: HOG cell size (16 in the paper; smaller for small images).
    progress: a progress bar.

  Returns:
    ``{'layers', 'stages': {mode: [names]}, 'results': {mode: {method:
    {metric: {'mean': [S], 'std': [S]}}}}, 'examples': {mode: {method:
    [S + 1, keep, H, W] abs-normalised maps}}, 'images': [keep, H, W, C],
    'seconds'}``. Stage 0 of ``examples`` is the trained model.
  """
  layers = layers or sanity.model_order(apply_fn, params, jnp.asarray(images[:1]))
  out: dict[str, Any] = {
    "layers": list(layers),
    "stages": {},
    "results": {},
    "examples": {},
    "images": np.asarray(images[:keep]),
    "seconds": {},
  }
  total = len(modes) * len(methods) * (-(-len(images) // batch_size))
  bar = tqdm(total=total, desc="sanity", disable=not progress, dynamic_ncols=True)
  # One jitted function per method for every mode: the stacked trees of all
  # modes have the same shapes, so each compiles once.
  sim_fn = jax.jit(lambda maps: _similarities(maps, pixels_per_cell))
  fns = {
    name: jax.jit(stage_maps_fn(apply_fn, method, kwargs))
    for name, (method, kwargs) in methods.items()
  }
  for mode in modes:
    t0 = time.perf_counter()
    stages = sanity.randomize(params, key, layers=layers, mode=mode)
    stacked = sanity.stack([params] + stages)
    # Stage s randomises layers[-s:] (cascading) or layers[-s] (independent).
    out["stages"][mode] = [layers[-(s + 1)] for s in range(len(stages))]
    out["results"][mode], out["examples"][mode] = {}, {}
    for name, fn in fns.items():
      sims: dict[str, list] = {m: [] for m in sanity.MEASURES}
      for s in range(0, len(images), batch_size):
        maps = fn(stacked, jnp.asarray(images[s : s + batch_size]))
        if s == 0:
          out["examples"][mode][name] = np.asarray(jax.vmap(A.normalize_abs)(maps[:, :keep]))
        for m, v in jax.device_get(sim_fn(maps)).items():
          sims[m].append(np.asarray(v))
        bar.update(1)
      out["results"][mode][name] = {}
      for m, chunks in sims.items():
        v = np.concatenate(chunks, axis=1)  # [S, N]
        out["results"][mode][name][m] = {
          "mean": np.nanmean(v, 1).tolist(),
          "std": np.nanstd(v, 1).tolist(),
          "nan": int(np.isnan(v).sum()),
        }
    out["seconds"][mode] = time.perf_counter() - t0
  bar.close()
  return out


def to_json(res: dict[str, Any]) -> dict[str, Any]:
  """The JSON-able part of the results (no maps)."""
  return {k: v for k, v in res.items() if k not in ("examples", "images")}


def write(res: dict[str, Any], directory: str) -> dict[str, str]:
  """Writes ``sanity.json`` and the figures (cascade and curves per mode) into ``directory``."""
  from jaxsal import figures

  os.makedirs(directory, exist_ok=True)
  paths = {"json": os.path.join(directory, "sanity.json")}
  if jax.process_index() == 0:  # the files of a multi-process job are written once
    tmp = paths["json"] + ".tmp"
    with open(tmp, "w") as f:
      json.dump(to_json(res), f, indent=2)
    os.replace(tmp, paths["json"])
  for mode in res["results"]:
    paths[f"{mode}_cascade"] = os.path.join(directory, f"{mode}_cascade.png")
    figures.sanity_cascade(res, paths[f"{mode}_cascade"], mode=mode)
    paths[f"{mode}_curves"] = os.path.join(directory, f"{mode}_curves.png")
    figures.sanity_curves(res, paths[f"{mode}_curves"], mode=mode)
  return paths


def summarize(res: dict[str, Any], mode: str = "cascading") -> dict[str, Any]:
  """One mode's stages, each method's curves (mean, std per measure) and its fully randomised similarity."""
  rows = res["results"][mode]
  return {
    "stages": res["stages"][mode],
    "methods": {
      name: {k: {"mean": r[k]["mean"], "std": r[k]["std"]} for k in sanity.MEASURES}
      for name, r in rows.items()
    },
    "fully_randomized": {
      name: {k: r[k]["mean"][-1] for k in sanity.MEASURES} for name, r in rows.items()
    },
  }


def format_table(
  res: dict[str, Any], *, mode: str = "cascading", metric: str = "spearman_abs"
) -> str:
  """Mean similarity per method (rows) and stage (columns) for one mode and measure."""
  stages = res["stages"][mode]
  head = ["method"] + stages
  rows = [
    [name] + [f"{m:.2f}" for m in r[metric]["mean"]] for name, r in res["results"][mode].items()
  ]
  title = (
    f"{mode}: {metric} to the trained model's maps, by stage (the stage's layer and all above it)"
    if mode == "cascading"
    else f"{mode}: {metric} to the trained model's maps, by randomised layer"
  )
  return "\n".join([title] + _common.text_table(head, rows))


def validate(config) -> None:
  """Checks the experiment's own entries before anything runs."""
  from jaxsal import _checks, train

  train.validate_config(config.classifier)
  _common.get_methods(config.methods, classifier=config.classifier)
  if not config.modes:
    raise ValueError(f"modes must name at least one of {list(MODES)}")
  for m in config.modes:
    _checks.check_choice(m, "mode", MODES)
  for m in config.label_modes:
    _checks.check_choice(m, "label mode", ("permute", "uniform"))
  for key in ("num_images", "batch_size", "hog_pixels_per_cell"):
    _checks.check_positive_int(config[key], key)
  if config.label_modes:
    train.validate_config(config.random_classifier)


def _methods(config) -> dict[str, tuple[Callable, dict[str, Any]]]:
  """name -> ``(method, kwargs)``: a stochastic method gets one key, the same noise at every stage."""
  from jaxsal import attribution as A

  return {
    name: (fn, {"key": jax.random.key(int(config.seed))} if A.needs_key(name) else {})
    for name, fn in _common.get_methods(config.methods).items()
  }


def memorization(
  apply_fn: Callable, params: Any, classifier_config, *, batch_size: int = 500
) -> float:
  """Accuracy of a random-label classifier on its own training set and its randomised labels.

  Near 1 means the model has memorised the random labels, which the data
  randomisation test presupposes (its maps are those of a model that fits
  the data without any relation between images and labels).
  """
  from jaxsal import data, train

  c = classifier_config
  info = data.dataset_info(c.dataset.name, c.dataset.get("config", None))
  src = data.load_source(
    c.dataset.name,
    c.dataset.train_split,
    config=c.dataset.get("config", None),
    data_dir=c.dataset.get("data_dir", None),
  )
  src = train.RandomLabelSource(
    src, c.dataset.label_randomization, num_classes=info["num_classes"], seed=c.seed
  )
  predict = jax.jit(lambda p, x: jnp.argmax(apply_fn(p, x), -1))
  correct = 0
  for s in range(0, len(src), batch_size):
    examples = [src[i] for i in range(s, min(s + batch_size, len(src)))]
    images = _common.normalize(c, np.stack([np.asarray(e["image"]) for e in examples]))
    labels = np.asarray([int(e["label"]) for e in examples])
    correct += int((np.asarray(predict(params, jnp.asarray(images))) == labels).sum())
  return correct / len(src)


def data_randomization(
  config,
  workdir: str,
  apply_fn: Callable,
  params: Any,
  images: np.ndarray,
  *,
  progress: bool = True,
) -> dict[str, Any]:
  """Trains a classifier on randomised labels (each mode) and compares its maps with the trained one's.

  Each random-label classifier is ``config.random_classifier`` with
  ``dataset.label_randomization`` set to the mode, trained (or reused) in
  ``workdir/random_labels_<mode>``. Both models explain their own argmax class.

  Returns:
    ``{mode: {'memorized': train accuracy on the random labels,
    'test_accuracy', 'results': {method: {metric: {'mean', 'std'}}}}}``.
  """
  from jaxsal import configs

  out: dict[str, Any] = {}
  methods = _methods(config)
  batch = int(config.batch_size)
  sim = jax.jit(
    lambda a, b: sanity.similarity(a, b, pixels_per_cell=int(config.hog_pixels_per_cell))
  )

  def explainer(f, method, kwargs):
    return jax.jit(lambda p, x: method(f, p, x, jnp.argmax(f(p, x), -1), **kwargs))

  # The trained model's maps, once for every label mode.
  trained = {
    name: [
      explainer(apply_fn, m, k)(params, jnp.asarray(images[s : s + batch]))
      for s in range(0, len(images), batch)
    ]
    for name, (m, k) in methods.items()
  }
  for mode in config.label_modes:
    c = configs.apply_overrides(config.random_classifier, [f"dataset.label_randomization={mode!r}"])
    apply_r, params_r, info = _common.trained_classifier(
      c, os.path.join(workdir, f"random_labels_{mode}"), progress=progress
    )
    entry: dict[str, Any] = {
      "memorized": memorization(apply_r, params_r, c),
      "test_accuracy": info["accuracy"],
      "results": {},
    }
    for name, (method, kwargs) in methods.items():
      rand_fn = explainer(apply_r, method, kwargs)
      vals: dict[str, list] = {m: [] for m in sanity.MEASURES}
      for i, s in enumerate(range(0, len(images), batch)):
        maps = rand_fn(params_r, jnp.asarray(images[s : s + batch]))
        for m, v in jax.device_get(sim(trained[name][i], maps)).items():
          vals[m].append(np.asarray(v))
      entry["results"][name] = {
        m: {
          "mean": float(np.nanmean(np.concatenate(v))),
          "std": float(np.nanstd(np.concatenate(v))),
        }
        for m, v in vals.items()
      }
    out[mode] = entry
    if progress:
      print(
        f"jaxsal: random labels ({mode}): {entry['memorized']:.3f} of the training set's "
        f"random labels fitted, test accuracy {entry['test_accuracy']:.3f}",
        flush=True,
      )
  return out


def run(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Trains (or reuses) the classifier in ``workdir`` and runs the randomisation tests.

  Results go to ``workdir/sanity/``: ``sanity.json`` (mean and std per
  stage, method and measure) and the cascade and curve figures per mode.

  Raises:
    ValueError: a bad config (before anything is written).
  """
  validate(config)
  t0 = time.perf_counter()
  apply_fn, params, info = _common.trained_classifier(config.classifier, workdir, progress=progress)
  images, _ = _common.test_images(config.classifier, int(config.num_images))
  methods = _methods(config)
  res = model_randomization(
    apply_fn,
    params,
    images,
    methods=methods,
    key=jax.random.key(int(config.seed)),
    modes=tuple(config.modes),
    batch_size=int(config.batch_size),
    pixels_per_cell=int(config.hog_pixels_per_cell),
    progress=progress,
  )
  res["classifier_accuracy"] = info["accuracy"]
  res["num_images"] = int(len(images))
  if config.label_modes:
    res["data_randomization"] = data_randomization(
      config, workdir, apply_fn, params, images, progress=progress
    )
  res["config"] = json.loads(config.to_json_best_effort())
  res["paths"] = write(res, os.path.join(workdir, "sanity"))
  res["seconds"]["total"] = time.perf_counter() - t0
  return res


def summary(res: dict[str, Any]) -> str:
  """The tables of every mode (and of the data randomisation) and a closing line."""
  parts = [format_table(res, mode=mode) for mode in res["results"]]
  if res.get("data_randomization"):
    parts.append(format_data_table(res))
  parts.append(
    f"jaxsal: sanity checks on {res['num_images']} images in {res['seconds']['total']:.1f}s; "
    f"results in {res['paths']['json']}, figures beside it"
  )
  return "\n".join(parts)


def format_data_table(res: dict[str, Any]) -> str:
  """Similarity of the random-label models' maps to the trained model's, per method and measure."""
  lines = []
  for mode, entry in res.get("data_randomization", {}).items():
    head = ["method"] + list(sanity.MEASURES)
    rows = [
      [name] + [f"{r[m]['mean']:.2f} ± {r[m]['std']:.2f}" for m in sanity.MEASURES]
      for name, r in entry["results"].items()
    ]
    lines += [
      f"data randomisation ({mode} labels; random labels fitted: "
      f"{entry['memorized']:.3f}, test accuracy {entry['test_accuracy']:.3f})"
    ]
    lines += _common.text_table(head, rows)
  return "\n".join(lines)
