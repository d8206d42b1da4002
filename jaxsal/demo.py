"""``jaxsal demo``: the experiments composed on one classifier, then a report.

Every part of jaxsal on the offline ``cluttered_digits`` dataset (digits on
cluttered canvases, with true boxes and masks), in minutes on a CPU. The
small CNN is trained into the workdir (or reused), then the parts
``config.parts`` lists run on it in order, each through its experiment's ``run``:

  - ``localization``: a CA masker (Phang, Park & Geras 2020), the gradient
    methods and the centre box (LE, OM, F1, SM, PxAP);
  - ``grid_pointing``: each method alone, with CGI and with VAR;
  - ``sanity``: cascading model randomisation (Adebayo et al. 2018);
  - ``gallery``: every method of ``jaxsal.attribution.get_method`` (and the
    masker) on a few held-out images, through ``jaxsal.explain.compute_maps``;
  - ``reconstruction``: an inpainting VAE (``train_generator``), then each
    map's top pixels kept and the rest sampled (after Thakur & Fischmeister 2020).

``metrics.json`` and ``report.html`` (:mod:`jaxsal.report`) come last.

Example:
  >>> from jaxsal import configs, demo
  >>> demo.validate(configs.get_config("demo_digits:test"))
"""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal import _checks, figures, report
from jaxsal.experiments import (
  _common,
  grid_pointing,
  localization,
  reconstruction,
  sanity_checks,
  train_generator,
)

COMMAND = "demo"
HELP = (
  "train a classifier and a masker on cluttered_digits, run every method, the localisation "
  "metrics, the grid pointing game, a sanity check and reconstructions; write report.html"
)
DEFAULT_CONFIG = "demo_digits"
DEFAULT_WORKDIR = os.path.join("runs", "demo")
CONFIG_HELP = "a demo config (demo_digits[:test]) or a .py path"
WORKDIR_HELP = (
  "models, results, figures, report.html and metrics.json go here (default runs/demo); "
  "models trained there are reused"
)
SET_EXAMPLE = "gallery.num_images=4"


def part_config(config, name: str):
  """The config of experiment ``name`` on the demo's classifier.

  The reconstruction part also gets the classifier's dataset for its
  generator, and ``localization.maskers[reconstruction.masker_variant]`` as
  its masker: the demo trains each masker once and every part reuses it.
  """
  sub = copy.deepcopy(config[name])
  sub.classifier = copy.deepcopy(config.classifier)
  if name == "reconstruction":
    d = config.classifier.dataset
    for key in ("name", "config", "data_dir", "train_split", "eval_split"):
      sub.generator.dataset[key] = d.get(key, None)
    if sub.masker_variant in config.localization.maskers:
      sub.masker = copy.deepcopy(config.localization.maskers[sub.masker_variant])
  return sub


def validate(config) -> None:
  """Checks the whole demo config before anything runs or is written.

  Raises:
    ValueError: an unknown part, or a bad entry of a listed part, named with its part.
  """
  from jaxsal import train

  train.validate_config(config.classifier)
  parts = tuple(config.parts)
  for p in parts:
    _checks.check_choice(p, "parts", PARTS)
  if len(set(parts)) != len(parts) or not parts:
    raise ValueError(f"parts must name each part at most once, at least one; got {parts}")
  experiments = dict(zip(PARTS, (localization, grid_pointing, sanity_checks, None, reconstruction)))
  for name in parts:
    if experiments[name] is not None:
      experiments[name].validate(part_config(config, name))
  if "sanity" in parts and "cascading" not in config.sanity.modes:
    raise ValueError(f"sanity.modes must include 'cascading'; got {tuple(config.sanity.modes)}")
  rc, g = part_config(config, "reconstruction"), config.gallery
  if "reconstruction" in parts:
    train_generator.validate(rc.generator)
    _checks.check_positive_int(rc.figure_images, "reconstruction.figure_images")
  if "gallery" in parts:
    where = "gallery.methods"
    _common.get_methods(g.methods, special=("masker",), where=where, classifier=config.classifier)
    _checks.check_positive_int(g.num_images, "gallery.num_images")
  uses_masker = ("reconstruction" in parts and "masker" in rc.methods) or (
    "gallery" in parts and "masker" in g.methods
  )
  if uses_masker and rc.masker_variant not in config.localization.maskers:
    raise ValueError(
      f"reconstruction.masker_variant {rc.masker_variant!r} is not among localization.maskers "
      f"{tuple(config.localization.maskers)}: the reconstructions and the gallery reuse the "
      "localisation's masker"
    )


def gallery(config, workdir: str, apply_fn, params, *, progress: bool = True) -> dict[str, Any]:
  """Every gallery method on the first ``gallery.num_images`` test images, for the predicted class.

  Returns:
    ``{'images': [N, H, W, C] in [0, 1], 'labels', 'predicted', 'boxes',
    'maps': {method: [N, H, W] |map| summed over channels}, 'seconds'}``.
    The masker's map explains the classifier it was trained with (for CA,
    the classifier trained alongside), the others the demo's classifier.
  """
  from jaxsal import explain

  examples = _common.test_examples(config.classifier, int(config.gallery.num_images))
  raw = np.stack([np.asarray(e["image"]) for e in examples])
  x = jnp.asarray(_common.normalize(config.classifier, raw))
  predicted = np.asarray(jax.jit(apply_fn)(params, x).argmax(-1))
  methods = _common.get_methods(config.gallery.methods, special=("masker",))
  fns = {
    name: (lambda af, p, x, t, key, fn=fn: fn(af, p, x, t, key=key))
    for name, fn in methods.items()
    if fn is not None
  }
  keys = jax.random.split(jax.random.key(int(config.seed)), len(raw))
  batch = {"keys": keys, "batch_size": len(raw), "progress": progress, "desc": "gallery"}
  maps, seconds = explain.compute_maps(apply_fn, params, x, fns, predicted, **batch)
  maps = {name: np.asarray(jnp.abs(jnp.asarray(m)).sum(-1)) for name, m in maps.items()}
  if "masker" in methods:
    t0, variant = time.perf_counter(), config.reconstruction.masker_variant
    mc = localization.masker_config(part_config(config, "localization"), variant, workdir)
    mask_fn, state = localization.trained_masker(mc, workdir, variant, progress=False)
    maps["masker"] = np.asarray(jax.jit(mask_fn)(state, x)[0], np.float32)
    seconds["masker"] = time.perf_counter() - t0
  return {
    "images": raw.astype(np.float32) / 255.0,
    "labels": np.asarray([int(e["label"]) for e in examples]),
    "predicted": predicted,
    "boxes": np.stack([np.asarray(e["box"]) for e in examples]) if "box" in examples[0] else None,
    "maps": maps,
    "seconds": seconds,
  }


# Each part: (config, workdir, the classifier and what earlier parts left, figure paths,
# progress) -> its entry in metrics.json.
def _localization(config, workdir, ctx, paths, progress):
  loc = localization.run(part_config(config, "localization"), workdir, progress=progress)
  return {"num_images": loc["num_images"], "rows": loc["rows"]}


def _grid_pointing(config, workdir, ctx, paths, progress):
  gc = part_config(config, "grid_pointing")
  grid = grid_pointing.run(gc, workdir, progress=progress)
  ex = grid_pointing.example(gc, ctx["apply_fn"], ctx["params"], seed=int(config.seed))
  figures.grid_example(ex, paths["grid_example"])
  return {"images_used": grid["images_used"], "grids": grid["grids"], "num_grids": gc.num_grids}


def _sanity(config, workdir, ctx, paths, progress):
  res = sanity_checks.run(part_config(config, "sanity"), workdir, progress=progress)
  return sanity_checks.summarize(res, "cascading")


def _gallery(config, workdir, ctx, paths, progress):
  gal = ctx["gallery"] = gallery(config, workdir, ctx["apply_fn"], ctx["params"], progress=progress)
  titles = [f"label {a}, predicted {b}" for a, b in zip(gal["labels"], gal["predicted"])]
  look = {"row_titles": titles, "boxes": gal["boxes"], "cell_size": 1.5, "style": "heat"}
  figures.method_grid(list(gal["images"]), gal["maps"], path=paths["gallery"], **look)
  paths["gallery_maps"] = os.path.join(workdir, report.FIGURES_DIR, "gallery_maps.npz")
  arrays = {k: gal[k] for k in ("images", "labels", "predicted")}
  if jax.process_index() == 0:  # the files of a multi-process job are written once
    np.savez_compressed(paths["gallery_maps"], **arrays, **gal["maps"])
  return {
    "methods": list(gal["maps"]),
    "num_images": len(gal["labels"]),
    "labels": gal["labels"].tolist(),
    "predicted": gal["predicted"].tolist(),
    "seconds": gal["seconds"],
  }


def _reconstruction(config, workdir, ctx, paths, progress):
  rc = part_config(config, "reconstruction")
  gen_dir = reconstruction.generator_workdir(rc, workdir)
  gen = train_generator.run(rc.generator, gen_dir, progress=progress)
  rec = reconstruction.run(rc, workdir, progress=progress)
  out = {k: rec[k] for k in ("num_images", "num_samples", "areas", "rows", "none_kept")}
  out["clean_accuracy"] = rec["clean_accuracy"]
  out["generator"] = {
    "steps": int(rc.generator.num_train_steps),
    "test_elbo": float(gen["eval"]["loss"]),
    "kl": float(gen["eval"]["kl"]),
  }
  gal = ctx.get("gallery")
  if gal is None:  # the figure shows the gallery's maps
    return out
  method = "optimized_mask" if "optimized_mask" in gal["maps"] else next(iter(gal["maps"]))
  n = min(int(rc.figure_images), len(gal["labels"]))
  picked = (gal["images"][:n], gal["maps"][method][:n], gal["predicted"][:n])
  ex = reconstruction.example(rc, workdir, *picked, ctx["apply_fn"], ctx["params"])
  title = f"top {ex['area']:.0%} of {method} kept, the rest sampled from the inpainting VAE"
  shown = {k: ex[k] for k in ("predicted", "clean")} | {"path": paths["reconstruction"]}
  figures.reconstruction_grid(ex["images"], ex["keep"], ex["samples"], title=title, **shown)
  out["example"] = {"method": method, "area": ex["area"], "kept": ex["kept"].tolist()}
  return out


PARTS = {
  "localization": _localization,
  "grid_pointing": _grid_pointing,
  "sanity": _sanity,
  "gallery": _gallery,
  "reconstruction": _reconstruction,
}


def run(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Runs the parts ``config.parts`` lists in ``workdir``; writes ``metrics.json`` and ``report.html``.

  Args:
    config: a ``demo_digits`` config.
    workdir: where the models, the parts' results, the figures and the
      report go. Trained models found there are reused.
    progress: progress bars and a line per part.

  Returns:
    ``{'metrics': what metrics.json holds, 'paths': {'report', 'metrics',
    'gallery_maps', figure name: path}}``.

  Raises:
    ValueError: a bad config, or a workdir that is a file, lies under a file
      or cannot be written; before anything is written.
  """
  validate(config)
  _common.check_workdir(workdir)
  t_start = time.perf_counter()
  paths = report.figure_paths(workdir)
  os.makedirs(os.path.join(workdir, report.FIGURES_DIR), exist_ok=True)
  cc, parts = config.classifier, tuple(config.parts)
  steps = len(parts) + 2
  say = lambda i, text: progress and print(f"jaxsal demo [{i}/{steps}]: {text}", flush=True)
  say(1, f"the classifier ({cc.model.name}, {cc.num_train_steps} steps; reused if trained)")
  t0 = time.perf_counter()
  apply_fn, params, info = _common.trained_classifier(cc, workdir, progress=progress)
  seconds = {"classifier": time.perf_counter() - t0}
  metrics: dict[str, Any] = {
    "classifier": {
      "model": cc.model.name,
      "dataset": cc.dataset.name,
      "steps": int(cc.num_train_steps),
      "test_accuracy": info["accuracy"],
    }
  }
  ctx = {"apply_fn": apply_fn, "params": params}
  for i, name in enumerate(parts, start=2):
    say(i, name.replace("_", " "))
    t0 = time.perf_counter()
    metrics[name] = PARTS[name](config, workdir, ctx, paths, progress)
    seconds[name] = time.perf_counter() - t0
  say(steps, "the report")
  metrics["seconds"] = {**seconds, "total": time.perf_counter() - t_start}
  metrics["environment"] = _common.environment()
  metrics["config"] = json.loads(config.to_json_best_effort())
  paths["metrics"] = os.path.join(workdir, report.METRICS_FILE)
  _common.write_result(paths["metrics"], metrics)
  paths["report"] = report.write(workdir, metrics)
  return {"metrics": metrics, "paths": paths}


def summary(result: dict[str, Any]) -> str:
  """The headline numbers and where the report is, as ``jaxsal demo`` prints them."""
  m, paths = result["metrics"], result["paths"]
  return (
    f"jaxsal: demo done in {m['seconds']['total']:.0f}s ({'; '.join(report.headline(m))})\n"
    f"jaxsal: report: {os.path.abspath(paths['report'])} "
    f"(numbers in {os.path.abspath(paths['metrics'])})"
  )
