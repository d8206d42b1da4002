"""``jaxsal demo``: train, explain, score and sanity-check a classifier, then write a report.

One command shows every part of jaxsal on the offline ``cluttered_digits``
dataset (handwritten digits on cluttered canvases, with true boxes and
masks), without a network and in minutes on a CPU:

  1. the small CNN is trained into the workdir (or reused from it);
  2. a CA masker is trained on it (Phang, Park & Geras 2020) and scored
     against the centre box and the gradient methods with the localisation
     metrics (LE, OM, F1, F1a, SM, PxAP, mean mask);
  3. the grid pointing game: each method alone, with CGI (Gupta & Arora
     2019) and with VAR (Walter, Vreeken & Fischer 2025);
  4. the cascading model-randomisation sanity check (Adebayo et al. 2018);
  5. every attribution method (and the masker) on a few held-out images;
  6. reconstructions (our reading of Thakur & Fischmeister 2020): a small
     inpainting VAE is trained, each map's top 10% is kept and the rest
     sampled, and the share of kept decisions is compared with random
     pixels and blobs of the same area;
  7. ``report.html`` (one file, figures embedded) and ``metrics.json``.

Everything the parts compute is also in the workdir (``localization.json``,
``grid_pointing.json``, ``sanity/``, ``reconstruction.json``, the
checkpoints, the generator in ``generator/``), and running the demo
again in the same workdir reuses the trained models.

Example:
  >>> from jaxsal import configs, demo
  >>> res = demo.run(configs.get_config("demo_digits:test"), "/tmp/demo")  # doctest: +SKIP
  >>> res["paths"]["report"]                                               # doctest: +SKIP
  '/tmp/demo/report.html'
"""

from __future__ import annotations

import base64
import copy
import datetime
import html
import json
import os
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxsal import _checks
from jaxsal.experiments import _common

PARTS = ("localization", "grid_pointing", "sanity", "reconstruction")
REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"
FIGURES_DIR = "figures"
LOCALIZATION_COLUMNS = ("le", "om", "f1", "f1a", "sm", "pxap", "area", "accuracy")


def _gallery_methods(g, side: int) -> dict[str, Any]:
  """name -> ``fn(apply_fn, params, x, target, *, key)`` with the gallery's settings.

  Every method comes from ``jaxsal.attribution.get_method``, as in
  ``jaxsal explain``; ``side`` is the images' side, for the mask sizes.
  """
  from jaxsal import attribution as A

  steps = int(g.optimization_steps)
  hparams = {
    "integrated_gradients": {"steps": int(g.ig_steps), "chunk_size": None},
    "smoothgrad": {"samples": int(g.smoothgrad_samples), "chunk_size": None},
    "gradcam": {"layer": g.gradcam_layer},
    "guided_gradcam": {"layer": g.gradcam_layer},
    "occlusion": {
      "patch": int(g.occlusion_patch),
      "stride": int(g.occlusion_stride),
      "chunk_size": 64,
    },
    "rise": {"num_masks": int(g.rise_masks), "chunk_size": min(int(g.rise_masks), 250)},
    "meaningful_perturbation": {"steps": steps, "mask_size": max(side // 4, 2)},
    "optimized_mask": {"steps": steps, "mask_scale": 4},
  }
  return {name: A.get_method(name, **hparams.get(name, {})) for name in A.method_names()}


def method_note(name: str) -> str:
  """What a gallery column shows, for the report."""
  from jaxsal import attribution as A

  if name == "masker":
    return "the CA masker's mask, one forward pass (Phang, Park & Geras 2020)"
  return A.method_description(name)


def _part(config, name: str):
  """The config of one part, with the demo's classifier (and, for the generator, its data)."""
  sub = copy.deepcopy(config[name])
  sub.classifier = copy.deepcopy(config.classifier)
  if name == "reconstruction":
    d = config.classifier.dataset
    for key in ("name", "config", "data_dir", "train_split", "eval_split"):
      sub.generator.dataset[key] = d.get(key, None)
  return sub


def validate(config) -> None:
  """Checks the whole demo config before anything runs or is written."""
  from jaxsal import train
  from jaxsal.configs import demo_digits
  from jaxsal.experiments import grid_pointing, localization, reconstruction, sanity_checks

  train.validate_config(config.classifier)
  localization.validate(_part(config, "localization"))
  grid_pointing.validate(_part(config, "grid_pointing"))
  sanity_checks.validate(_part(config, "sanity"))
  rec = _part(config, "reconstruction")
  reconstruction.validate(rec)
  train.validate_generator_config(rec.generator)
  _checks.check_positive_int(rec.get("figure_images", 3), "reconstruction.figure_images")
  if "masker" in rec.methods and rec.masker_variant not in config.localization.maskers:
    raise ValueError(
      f"reconstruction.masker_variant {rec.masker_variant!r} is not among "
      f"localization.maskers {tuple(config.localization.maskers)}: the demo "
      f"reuses the localisation's masker"
    )
  if "cascading" not in config.sanity.modes:
    raise ValueError(f"sanity.modes must include 'cascading'; got {tuple(config.sanity.modes)}")
  g = config.gallery
  methods = list(g.methods)
  if not methods:
    raise ValueError(
      f"gallery.methods: give at least one; known: {', '.join(demo_digits.GALLERY_METHODS)}"
    )
  for m in methods:
    _checks.check_choice(m, "gallery.methods", demo_digits.GALLERY_METHODS)
  if "masker" in methods and not config.localization.maskers:
    raise ValueError("gallery.methods has 'masker' but localization.maskers is empty")
  for key in (
    "num_images",
    "ig_steps",
    "smoothgrad_samples",
    "occlusion_patch",
    "occlusion_stride",
    "rise_masks",
    "optimization_steps",
  ):
    _checks.check_positive_int(g[key], f"gallery.{key}")


def _say(progress: bool, text: str) -> None:
  if progress:
    print(text, flush=True)


def gallery(config, workdir: str, apply_fn, params, *, progress: bool = True) -> dict[str, Any]:
  """Every gallery method on the first ``gallery.num_images`` test images, for the predicted class.

  Returns:
    ``{'images': [N, H, W, C] in [0, 1], 'labels', 'predicted', 'boxes',
    'maps': {method: [N, H, W] |map| summed over channels}, 'seconds'}``.
    The masker's map explains the classifier it was trained with (for CA,
    the classifier trained alongside), the others the demo's classifier.
  """
  from jaxsal import data, train
  from jaxsal.configs import localization_digits
  from jaxsal.experiments import localization

  g = config.gallery
  cc = config.classifier
  src = data.load_source(
    cc.dataset.name,
    cc.dataset.eval_split,
    config=cc.dataset.get("config", None),
    data_dir=cc.dataset.get("data_dir", None),
  )
  n = min(int(g.num_images), len(src))
  examples = [src[i] for i in range(n)]
  raw = np.stack([np.asarray(e["image"]) for e in examples])
  x = jnp.asarray(_common.normalize(cc, raw))
  labels = np.asarray([int(e["label"]) for e in examples])
  boxes = np.stack([np.asarray(e["box"]) for e in examples]) if "box" in examples[0] else None
  predicted = np.asarray(jax.jit(apply_fn)(params, x).argmax(-1))
  target = jnp.asarray(predicted, jnp.int32)
  keys = jax.random.split(jax.random.key(int(config.seed)), n)
  fns = _gallery_methods(g, int(raw.shape[1]))
  maps, seconds = {}, {}
  bar = tqdm(list(g.methods), desc="gallery", disable=not progress, dynamic_ncols=True)
  for name in bar:
    bar.set_postfix_str(name)
    t0 = time.perf_counter()
    if name == "masker":
      variant = config.localization.maskers[0]
      mc = localization._masker_config(_part(config, "localization"), variant, localization_digits)
      mc.classifier_workdir = workdir
      out = train.train_masker(mc, os.path.join(workdir, "maskers", variant), progress=False)
      mask_fn = jax.jit(train.make_mask_fn(out["classifier"], out["masker"]))
      m = mask_fn(out["state"], x)[0]
    else:
      fn = fns[name]
      m = jax.jit(lambda p, x, t, k, fn=fn: fn(apply_fn, p, x, t, key=k))(params, x, target, keys)
      m = jnp.abs(m).sum(-1)
    maps[name] = np.asarray(jax.device_get(m), np.float32)
    if not np.all(np.isfinite(maps[name])):
      raise FloatingPointError(f"gallery: {name} gave non-finite maps")
    seconds[name] = time.perf_counter() - t0
  bar.close()
  return {
    "images": raw.astype(np.float32) / 255.0,
    "labels": labels,
    "predicted": predicted,
    "boxes": boxes,
    "maps": maps,
    "seconds": seconds,
  }


def grid_example(config, apply_fn, params) -> dict[str, Any]:
  """One 2x2 grid of test digits, explained for each cell's class: alone, with CGI, with VAR.

  The method is gradient x input if the grid pointing config has it, else
  its first method. The digits are drawn from the test images the model
  classifies correctly with the game's confidence (all test images if fewer
  than 4 classes are left, as with an untrained model).
  """
  from jaxsal import attribution as A
  from jaxsal import data, metrics
  from jaxsal.experiments import grid_pointing

  gc = _part(config, "grid_pointing")
  method = "gradient_x_input" if "gradient_x_input" in gc.methods else gc.methods[0]
  images, labels = _common.test_images(gc.classifier, 500)
  keep = metrics.confident_correct(
    jax.jit(apply_fn), params, images, labels, min_confidence=float(gc.min_confidence)
  )
  if len(np.unique(labels[keep])) >= 4:
    images, labels = images[keep], labels[keep]
  grids = data.compose_grids(images, labels, n=2, num_grids=1, seed=int(config.seed))
  x = jnp.asarray(grids["image"])
  classes = grids["labels"][0]
  kwargs = _common.method_kwargs(method, gc)

  @jax.jit
  def fn(p, x):
    all_maps = A.all_classes(grid_pointing.METHODS[method])(apply_fn, p, x, **kwargs)
    alone = all_maps[classes, 0][:, None]  # [4, 1, H, W, C]
    return {
      "alone": alone[:, 0],
      "cgi": A.competition_from_maps(all_maps)[classes, 0],
      "var": A.var_from_maps(alone, temperature=gc.temperature, tau=gc.tau)[:, 0],
    }

  out = jax.device_get(fn(params, x))
  raw = grids["image"][0] * np.asarray(gc.classifier.dataset.std) + np.asarray(
    gc.classifier.dataset.mean
  )
  return {
    "image": np.clip(raw, 0, 1),
    "classes": classes.tolist(),
    "method": method,
    "maps": {k: np.asarray(v).sum(-1) for k, v in out.items()},
  }


def _plot_grid_example(ex: dict[str, Any], path: str) -> None:
  from jaxsal import figures

  plt = figures._pyplot()
  variants = list(ex["maps"])
  fig, axes = plt.subplots(len(variants), 5, figsize=(8.5, 1.8 * len(variants)), squeeze=False)
  for r, v in enumerate(variants):
    axes[r, 0].imshow(figures._rgb(ex["image"]), interpolation="nearest")
    axes[r, 0].set_ylabel(v, rotation=0, ha="right", va="center", fontsize=9)
    for k, c in enumerate(ex["classes"]):
      pos = np.maximum(ex["maps"][v][k], 0)  # the pointing game counts positive mass
      axes[r, k + 1].imshow(figures.blend(ex["image"], pos), interpolation="nearest")
      if r == 0:
        axes[r, k + 1].set_title(f"class {c}", fontsize=9)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(
    f"{ex['method']} on a 2x2 grid, for each cell's class: the right cell should light up",
    fontsize=9,
  )
  figures._finish(fig, path)


def _sanity_summary(res: dict[str, Any]) -> dict[str, Any]:
  from jaxsal.experiments.sanity_checks import METRICS

  mode = "cascading"
  return {
    "stages": res["stages"][mode],
    "methods": {
      name: {m: {"mean": r[m]["mean"], "std": r[m]["std"]} for m in METRICS}
      for name, r in res["results"][mode].items()
    },
    "fully_randomized": {
      name: {m: r[m]["mean"][-1] for m in METRICS} for name, r in res["results"][mode].items()
    },
  }


def run(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Runs the demo in ``workdir`` and writes ``report.html`` and ``metrics.json`` there.

  Args:
    config: a ``demo_digits`` config.
    workdir: where the models, the parts' results, the figures and the
      report go. Trained models found there are reused.
    progress: progress bars and a line per part.

  Returns:
    ``{'metrics': what metrics.json holds, 'paths': {'report', 'metrics',
    figure name: path}}``.

  Raises:
    ValueError: a bad config, before anything is written.
  """
  from jaxsal import train
  from jaxsal.experiments import grid_pointing, localization, reconstruction, sanity_checks

  validate(config)
  t_start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  fig_dir = os.path.join(workdir, FIGURES_DIR)
  os.makedirs(fig_dir, exist_ok=True)
  seconds: dict[str, float] = {}
  steps = 7

  _say(
    progress,
    f"jaxsal demo [1/{steps}]: the classifier ({config.classifier.model.name}, "
    f"{config.classifier.num_train_steps} steps; reused if trained in {workdir})",
  )
  t0 = time.perf_counter()
  apply_fn, params, info = _common.trained_classifier(config.classifier, workdir, progress=progress)
  seconds["classifier"] = time.perf_counter() - t0

  _say(
    progress,
    f"jaxsal demo [2/{steps}]: masker "
    f"{', '.join(config.localization.maskers)} and localisation of "
    f"{config.localization.num_images} test images",
  )
  t0 = time.perf_counter()
  loc = localization.run(_part(config, "localization"), workdir, progress=progress)
  seconds["localization"] = time.perf_counter() - t0

  _say(progress, f"jaxsal demo [3/{steps}]: grid pointing game")
  t0 = time.perf_counter()
  grid = grid_pointing.run(_part(config, "grid_pointing"), workdir, progress=progress)
  example = grid_example(config, apply_fn, params)
  paths = {"grid_example": os.path.join(fig_dir, "grid_example.png")}
  _plot_grid_example(example, paths["grid_example"])
  seconds["grid_pointing"] = time.perf_counter() - t0

  _say(progress, f"jaxsal demo [4/{steps}]: cascading model-randomisation sanity check")
  t0 = time.perf_counter()
  san = sanity_checks.run(_part(config, "sanity"), workdir, progress=progress)
  paths["sanity_cascade"] = san["paths"]["cascading_cascade"]
  paths["sanity_curves"] = san["paths"]["cascading_curves"]
  seconds["sanity"] = time.perf_counter() - t0

  _say(
    progress,
    f"jaxsal demo [5/{steps}]: {len(config.gallery.methods)} methods on "
    f"{config.gallery.num_images} held-out images",
  )
  t0 = time.perf_counter()
  gal = gallery(config, workdir, apply_fn, params, progress=progress)
  paths["gallery"] = os.path.join(fig_dir, "gallery.png")
  _plot_gallery(gal, paths["gallery"])
  paths["gallery_maps"] = os.path.join(fig_dir, "gallery_maps.npz")
  np.savez_compressed(
    paths["gallery_maps"],
    images=gal["images"],
    labels=gal["labels"],
    predicted=gal["predicted"],
    **gal["maps"],
  )
  seconds["gallery"] = time.perf_counter() - t0

  rc = _part(config, "reconstruction")
  _say(
    progress,
    f"jaxsal demo [6/{steps}]: reconstructions: the inpainting VAE "
    f"({rc.generator.num_train_steps} steps; reused if trained in "
    f"{reconstruction.generator_workdir(rc, workdir)}), then "
    f"{len(rc.methods)} methods on {rc.num_images} test images",
  )
  t0 = time.perf_counter()
  gen_out = train.train_generator(
    rc.generator, reconstruction.generator_workdir(rc, workdir), progress=progress
  )
  rec = reconstruction.run(rc, workdir, progress=progress)
  rec_example = reconstruction_example(rc, workdir, gal, apply_fn, params)
  paths["reconstruction"] = os.path.join(fig_dir, "reconstruction.png")
  _plot_reconstructions(rec_example, paths["reconstruction"])
  seconds["reconstruction"] = time.perf_counter() - t0

  _say(progress, f"jaxsal demo [7/{steps}]: the report")
  seconds["total"] = time.perf_counter() - t_start
  metrics = {
    "classifier": {
      "model": config.classifier.model.name,
      "dataset": config.classifier.dataset.name,
      "steps": int(config.classifier.num_train_steps),
      "test_accuracy": info["accuracy"],
    },
    "localization": {"num_images": loc["num_images"], "rows": loc["rows"]},
    "grid_pointing": {
      "images_used": grid["images_used"],
      "grids": grid["grids"],
      "num_grids": int(config.grid_pointing.num_grids),
    },
    "sanity": _sanity_summary(san),
    "gallery": {
      "methods": list(gal["maps"]),
      "num_images": len(gal["labels"]),
      "labels": gal["labels"].tolist(),
      "predicted": gal["predicted"].tolist(),
      "seconds": gal["seconds"],
    },
    "reconstruction": {
      "num_images": rec["num_images"],
      "num_samples": rec["num_samples"],
      "areas": rec["areas"],
      "rows": rec["rows"],
      "none_kept": rec["none_kept"],
      "clean_accuracy": rec["clean_accuracy"],
      "generator": {
        "steps": int(rc.generator.num_train_steps),
        "test_elbo": float(gen_out["eval"]["loss"]),
        "kl": float(gen_out["eval"]["kl"]),
      },
      "example": {
        "method": rec_example["method"],
        "area": rec_example["area"],
        "kept": rec_example["kept"].tolist(),
      },
    },
    "seconds": seconds,
    "environment": _environment(),
    "config": json.loads(config.to_json_best_effort()),
  }
  paths["metrics"] = os.path.join(workdir, METRICS_FILE)
  paths["report"] = os.path.join(workdir, REPORT_FILE)
  _write_atomic(paths["metrics"], json.dumps(metrics, indent=2))
  _write_atomic(paths["report"], render_report(metrics, paths))
  return {"metrics": metrics, "paths": paths}


def reconstruction_example(
  config, workdir: str, gal: dict[str, Any], apply_fn, params
) -> dict[str, Any]:
  """Reconstructions of the first gallery images from the top of their optimised mask.

  The gallery's ``optimized_mask`` map (or its first method's, without it)
  keeps the reconstruction experiment's first area of each image; the
  generator samples the rest, and the classifier classifies each sample.

  Returns:
    ``{'images', 'keep': [N, H, W] in {0, 1}, 'samples': [S, N, H, W, C],
    'predicted': [S, N], 'clean': [N], 'kept': [N] share of samples whose
    decision is the clean one, 'method', 'area'}``.
  """
  from jaxsal import attribution as A
  from jaxsal import train
  from jaxsal.experiments import reconstruction

  n = min(int(config.get("figure_images", 3)), len(gal["labels"]))
  method = "optimized_mask" if "optimized_mask" in gal["maps"] else next(iter(gal["maps"]))
  area = float(config.areas[0])
  gen = train.load_generator(reconstruction.generator_workdir(config, workdir))
  x01 = jnp.asarray(gal["images"][:n])
  keep = A.keep_top(jnp.asarray(gal["maps"][method][:n]), area)
  keys = jax.random.split(jax.random.key(int(config.seeds[0])), n)
  samples = A.reconstruct(gen, x01, keep, key=keys, num_samples=int(config.num_samples))
  flat = samples.reshape((-1,) + x01.shape[1:])
  pred = jax.jit(apply_fn)(
    params, jnp.asarray(_common.normalize(config.classifier, np.asarray(flat) * 255.0))
  )
  pred = np.asarray(pred.argmax(-1)).reshape(samples.shape[:2])
  clean = np.asarray(gal["predicted"][:n])
  return {
    "images": np.asarray(x01),
    "keep": np.asarray(keep, np.float32),
    "samples": np.asarray(samples, np.float32),
    "predicted": pred,
    "clean": clean,
    "kept": (pred == clean[None]).mean(0),
    "method": method,
    "area": area,
  }


def _plot_reconstructions(ex: dict[str, Any], path: str) -> None:
  from jaxsal import figures

  figures.reconstruction_grid(
    ex["images"],
    ex["keep"],
    ex["samples"],
    predicted=ex["predicted"],
    clean=ex["clean"],
    path=path,
    title=f"top {ex['area']:.0%} of {ex['method']} kept, the rest sampled from the inpainting VAE",
  )


def _plot_gallery(gal: dict[str, Any], path: str) -> None:
  from jaxsal import figures

  titles = [f"label {lab}, predicted {p}" for lab, p in zip(gal["labels"], gal["predicted"])]
  figures.method_grid(
    list(gal["images"]),
    gal["maps"],
    row_titles=titles,
    boxes=gal["boxes"],
    cell_size=1.5,
    style="heat",
    path=path,
  )


def _environment() -> dict[str, Any]:
  import jaxsal

  devices = jax.devices()
  return {
    "jaxsal": jaxsal.__version__,
    "jax": jax.__version__,
    "python": platform.python_version(),
    "platform": devices[0].platform,
    "device_kind": devices[0].device_kind,
    "num_devices": len(devices),
    "cpu_count": os.cpu_count(),
    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
  }


def _write_atomic(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


# ---------------------------------------------------------------- the report


def _img(path: str, alt: str) -> str:
  with open(path, "rb") as f:
    data = base64.b64encode(f.read()).decode("ascii")
  return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _table(head: list[str], rows: list[list[str]], *, klass: str = "") -> str:
  th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
  body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
  return f'<table class="{klass}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{background:#f3f3f3} table.text td,table.text th{text-align:left}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}
.note{color:#555;font-size:.92em} code{background:#f5f5f5;padding:0 .2em}
"""


def render_report(metrics: dict[str, Any], paths: dict[str, str]) -> str:
  """The self-contained HTML report: tables from ``metrics``, figures embedded from ``paths``."""
  from jaxsal.experiments import grid_pointing
  from jaxsal.experiments.sanity_checks import METRICS

  e = html.escape
  c, sec = metrics["classifier"], metrics["seconds"]
  env = metrics["environment"]
  parts = [
    f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
    f"<title>jaxsal demo report</title><style>{_CSS}</style></head><body>",
    "<h1>jaxsal demo</h1>",
    f"<p class='note'>{e(env['date'])}; jaxsal {e(env['jaxsal'])}, jax {e(env['jax'])} on "
    f"{env['num_devices']} {e(env['platform'])} device(s) ({e(env['device_kind'])}), "
    f"{env['cpu_count']} CPU cores; {sec['total']:.0f} s in all. The sizes are the demo's "
    f"(a few hundred to a thousand test images), so the numbers are noisier than the "
    f"full experiments in jaxsal's README.</p>",
    "<h2>The classifier</h2>",
    f"<p><code>{e(c['model'])}</code> trained on <code>{e(c['dataset'])}</code> "
    f"(digits on cluttered canvases, with true boxes and masks) for {c['steps']} steps: "
    f"test accuracy <b>{c['test_accuracy']:.4f}</b> ({sec['classifier']:.0f} s).</p>",
  ]

  # Gallery.
  gal = metrics["gallery"]
  parts += [
    "<h2>Every method on held-out images</h2>",
    f"<p>{gal['num_images']} test images (the true box drawn in green), each explained for "
    f"its predicted class by {len(gal['methods'])} methods; each map is its absolute value "
    f"summed over channels, scaled to its 99.5th percentile and coloured from black "
    f"(0) to yellow (1) ({sec['gallery']:.0f} s).</p>",
    _img(paths["gallery"], "every method on held-out images"),
    _table(
      ["method", "what the map is", "seconds"],
      [
        [f"<code>{e(m)}</code>", e(method_note(m)), f"{gal['seconds'][m]:.1f}"]
        for m in gal["methods"]
      ],
      klass="text",
    ),
  ]

  # Localisation.
  loc = metrics["localization"]
  rows = loc["rows"]
  lower = {"le", "om", "sm"}
  best = {}
  for col in LOCALIZATION_COLUMNS[:-1]:
    vals = [r[col] for r in rows.values()]
    best[col] = (min if col in lower else max)(vals) if col != "area" else None
  table_rows = []
  for name, r in rows.items():
    cells = [e(name)]
    for col in LOCALIZATION_COLUMNS:
      s = f"{r[col]:.3f}"
      cells.append(f"<b>{s}</b>" if best.get(col) is not None and r[col] == best[col] else s)
    table_rows.append(cells)
  names = {"le": "LE", "om": "OM", "f1": "F1", "f1a": "F1a", "sm": "SM", "pxap": "PxAP"}
  head = ["map"] + [names.get(col, col) for col in LOCALIZATION_COLUMNS]
  parts += [
    "<h2>Localisation</h2>",
    f"<p>Weakly supervised localisation on {loc['num_images']} test images "
    f"({sec['localization']:.0f} s, the masker's training included). "
    "<b>LE</b>: localisation error, the share of images where the box around the "
    "largest connected region of the map above its mean overlaps the true box with IoU "
    "&le; 0.5 (lower is better); <b>OM</b>: LE that also counts a wrong top-1 as an "
    "error (lower); <b>F1</b>, <b>F1a</b>: F1 of the continuous map against the true box "
    "(best and mean over an image's boxes; one box here, so they are equal; higher); "
    "<b>SM</b>: Dabkowski &amp; Gal's saliency metric, log of the box's area fraction "
    "minus the log probability of the class on the box's crop (lower); <b>PxAP</b>: "
    "pixel average precision against the true mask (higher); area: the mean map value; "
    "accuracy: of the "
    "classifier that the map explains. Best in bold.</p>",
    _table(head, table_rows),
  ]

  # Grid pointing.
  gp = metrics["grid_pointing"]
  sizes = list(gp["grids"])
  methods = sorted(
    {k.split("/")[0] for r in gp["grids"].values() for k in r},
    key=list(grid_pointing.METHODS).index,
  )
  variants = grid_pointing.VARIANTS
  grow = []
  for m in methods:
    for s in sizes:
      cells = [e(m) if len(sizes) == 1 else e(f"{m} ({s})")]
      for v in variants:
        r = gp["grids"][s].get(f"{m}/{v}")
        cells.append(
          "-"
          if r is None
          else f"{r['mean']:.3f} ± {r['sem']:.3f}"
          + (
            f" <span class='note'>({r['empty_share']:.0%} empty)</span>"
            if r.get("empty_share")
            else ""
          )
        )
      grow.append(cells)
  chance = ", ".join(f"{1 / int(s.split('x')[0]) ** 2:.2f} for {s}" for s in sizes)
  parts += [
    "<h2>Grid pointing game</h2>",
    f"<p>{gp['num_grids']} grids per size of test digits of distinct classes (each "
    f"classified correctly with high confidence on its own; {gp['images_used']} such "
    f"images). A map's score is the share of its positive mass inside the cell of the "
    f"explained class (chance: {chance}); mean ± standard error, higher is better. "
    f"A map with no positive mass scores 0 (the share of such maps in brackets) "
    f"({sec['grid_pointing']:.0f} s).</p>",
    _table(["method"] + [f"{v}" for v in variants], grow),
    _img(paths["grid_example"], "a 2x2 grid explained for each cell's class"),
  ]

  # Sanity.
  san = metrics["sanity"]
  srows = [
    [f"<code>{e(m)}</code>"] + [f"{r[k]:.2f}" for k in METRICS]
    for m, r in san["fully_randomized"].items()
  ]
  parts += [
    "<h2>Sanity check: cascading model randomisation</h2>",
    f"<p>The layers are re-initialised one by one from the logits down "
    f"({', '.join(e(s) for s in san['stages'])}); at each stage every method's maps are "
    "compared with the trained model's (Spearman rank correlation of the absolute and of "
    "the signed map, SSIM, HOG similarity). A method that explains the model should lose "
    f"its similarity as the model is destroyed ({sec['sanity']:.0f} s).</p>",
    _img(paths["sanity_cascade"], "cascading randomisation of the maps"),
    _img(paths["sanity_curves"], "similarity curves"),
    "<p>Similarity to the trained model's maps once every layer is random (lower means the "
    "method depends on the model):</p>",
    _table(["method"] + list(METRICS), srows),
  ]

  # Reconstruction.
  rec = metrics["reconstruction"]
  areas = [str(a) for a in rec["areas"]]
  pct = lambda st, k: f"{100 * st[k + '_mean']:.1f}"
  floors = {"random_pixels", "random_blobs"}
  rrows = [
    [f"<code>{e(m)}</code>" + (" <span class='note'>(floor)</span>" if m in floors else "")]
    + [pct(r[a], "kept") for a in areas]
    + [pct(r[a], "accuracy") for a in areas]
    for m, r in rec["rows"].items()
  ]
  nk = rec["none_kept"]
  rrows.append(
    ["nothing kept <span class='note'>(floor)</span>"]
    + [pct(nk, "kept")] * len(areas)
    + [pct(nk, "accuracy")] * len(areas)
  )
  g = rec["generator"]
  ex = rec["example"]
  parts += [
    "<h2>Reconstructions from the salient pixels</h2>",
    f"<p>Our reading of Thakur &amp; Fischmeister 2020: each map's top "
    f"{', '.join(f'{float(a):.0%}' for a in areas)} of pixels is kept, the rest is "
    f"sampled {rec['num_samples']} times from an inpainting VAE ({g['steps']} steps; "
    f"test -ELBO {g['test_elbo']:.1f} nats per image, KL {g['kl']:.1f}), and the "
    f"classifier classifies each sample. <b>kept</b>: the share (%) of samples whose class "
    f"is the classifier's on the clean image; <b>acc</b>: the share that is the true "
    f"label; {rec['num_images']} test images, clean accuracy "
    f"{rec['clean_accuracy']:.3f}. Random pixels and random blobs of the same area are "
    f"the floors a map must beat ({sec['reconstruction']:.0f} s, the generator's "
    f"training included).</p>",
    _table(
      ["map"] + [f"kept @{float(a):.0%}" for a in areas] + [f"acc @{float(a):.0%}" for a in areas],
      rrows,
    ),
    _img(paths["reconstruction"], "reconstructions from the kept pixels"),
    f"<p class='note'>The figure keeps the top {ex['area']:.0%} of "
    f"<code>{e(ex['method'])}</code>'s gallery map; a sample's class is green where it "
    f"is the clean image's.</p>",
  ]

  parts += [
    "<h2>Reproduce</h2>",
    "<p>Every number above is in <code>metrics.json</code> beside this file; the parts "
    "also wrote <code>localization.json</code>, <code>grid_pointing.json</code>, "
    "<code>sanity/</code> and <code>reconstruction.json</code> into the workdir. The "
    "full experiments: <code>jaxsal localization --config localization_digits</code>, "
    "<code>jaxsal grid-pointing --config grid_pointing_digits</code>, <code>jaxsal "
    "sanity --config sanity_digits</code>, <code>jaxsal train-generator</code> then "
    "<code>jaxsal reconstruction</code>.</p>",
    "</body></html>",
  ]
  return "\n".join(parts)
