"""Does the classifier keep its decision when only an explanation's pixels are kept?

Our reading of Thakur & Fischmeister (2020): keep the salient pixels of an
input, sample the rest from a generative model of the data, and count how
often the classifier's decision survives (the paper reports 89%). Each
explanation is compared at the same mask area: its top ``area`` of pixels
(``attribution.keep_top``). Rows:

  * ``optimized_mask``: ``attribution.optimized_mask`` for the predicted class;
  * ``masker``: the trained masker's mask (a ``masker_digits`` variant; for CA
    it is computed with the classifier trained alongside it);
  * ``random_pixels`` / ``random_blobs``: uniform noise per pixel, or on a
    coarse grid upsampled: the floor the others are read against;
  * the gradient methods: ``|map|`` summed over channels, predicted class;
  * ``none kept``: area 0, the generator's samples alone.

The decision is the original classifier's top-1 on the clean image; each
row reports the share of reconstructions (``num_samples`` per image) with
the same top-1 ("kept") and with the true label ("accuracy"), as the mean and
standard deviation over ``seeds`` (which draw the random masks, the
optimised masks' starts, SmoothGrad's noise and the generator's samples).
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
from tqdm.auto import tqdm

from jaxsal import _checks
from jaxsal import attribution as A
from jaxsal.experiments import _common, localization

COMMAND = "reconstruction"
HELP = (
  "keep each explanation's top pixels, sample the rest, count kept decisions "
  "(our reading of Thakur & Fischmeister 2020)"
)
DEFAULT_CONFIG = "reconstruction_digits"
CONFIG_HELP = "an experiment config (reconstruction_digits[:test]) or a .py path"
WORKDIR_HELP = (
  "the classifier's workdir: trained there if it holds no checkpoint; the generator is read "
  "from <workdir>/generator (train it first with jaxsal train-generator), the masker from "
  "<workdir>/maskers/<masker_variant>"
)
SET_EXAMPLE = "num_images=100"

RESULT_FILE = "reconstruction.json"
# Rows the experiment computes itself; every other name is a get_method method.
OWN_ROWS = ("masker", "random_pixels", "random_blobs")


def generator_workdir(config, workdir: str) -> str:
  """``config.generator_workdir`` or ``<workdir>/generator``."""
  return config.generator_workdir or os.path.join(workdir, "generator")


def validate(config) -> None:
  """Checks the experiment's entries before anything runs.

  Raises:
    ValueError: an unknown method (the known ones listed), an area outside
      ``(0, 1]``, no seeds, a non-positive count, a bad optimised-mask setting.
  """
  from jaxsal import train

  train.validate_config(config.classifier)
  methods = _common.get_methods(config.methods, special=OWN_ROWS, classifier=config.classifier)
  if not config.areas:
    raise ValueError("areas must hold at least one kept fraction in (0, 1]")
  for a in config.areas:
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a <= 1:
      raise ValueError(f"areas must be fractions in (0, 1]; got {a!r}")
  if not config.seeds:
    raise ValueError("seeds must hold at least one seed (the spread is over seeds)")
  for key in ("num_images", "batch_size", "num_samples", "blob_scale"):
    _checks.check_positive_int(config[key], key)
  om = _common.method_params(config.methods).get("optimized_mask", {})
  for key in ("steps", "mask_scale"):
    if key in om:
      _checks.check_positive_int(om[key], f"methods.optimized_mask.{key}")
  for key in ("lam_area", "lam_tv"):
    if key in om and (isinstance(om[key], bool) or not float(om[key]) >= 0):
      raise ValueError(f"methods.optimized_mask.{key} must be a number >= 0; got {om[key]!r}")
  if "masker" in methods:
    train.validate_masker_config(masker_config(config, ""))


def masker_config(config, workdir: str):
  """The nested masker config, on this experiment's classifier in ``workdir``."""
  mc = copy.deepcopy(config.masker)
  mc.classifier = copy.deepcopy(config.classifier)
  mc.classifier_workdir = workdir
  return mc


def _image_keys(seed: int, index: jax.Array) -> jax.Array:
  """One key per image, from its index in the split: the same in any batch."""
  return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(index)


def run(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Scores every method's reconstructions; writes ``reconstruction.json`` into ``workdir``.

  Raises:
    FileNotFoundError: no trained generator in the generator workdir (the
      message says how to train one), before anything else runs.
    ValueError: a bad config.

  Returns:
    ``{'rows': {method: {area: stats}}, 'none_kept': stats, 'localization',
    'classifier_accuracy', 'num_images', 'seconds', 'path'}``, where
    ``stats`` holds ``kept_mean``, ``kept_std``, ``accuracy_mean``,
    ``accuracy_std`` and ``kept_per_seed``.
  """
  from jaxsal import data, train

  validate(config)
  methods = _common.get_methods(config.methods, special=OWN_ROWS)
  gen = train.load_generator(generator_workdir(config, workdir))
  cc = config.classifier
  apply_fn, params, info = _common.trained_classifier(cc, workdir, progress=progress)
  test = data.load_source(
    cc.dataset.name,
    cc.dataset.eval_split,
    config=cc.dataset.get("config", None),
    data_dir=cc.dataset.get("data_dir", None),
  )
  n = min(int(config.num_images), len(test))
  x01 = np.stack([np.asarray(test[i]["image"], np.float32) / 255.0 for i in range(n)])
  labels = np.asarray([int(test[i]["label"]) for i in range(n)], np.int32)
  mean = jnp.asarray(cc.dataset.mean, jnp.float32)
  std = jnp.asarray(cc.dataset.std, jnp.float32)
  to_input = lambda v: (v - mean) / std
  gen_shape = tuple(
    jax.eval_shape(
      gen.decode,
      jnp.zeros((1, gen.latent_dim)),
      jnp.zeros((1,) + x01.shape[1:]),
      jnp.ones((1,) + x01.shape[1:3] + (1,)),
    ).shape[1:]
  )
  if gen_shape != x01.shape[1:]:
    raise ValueError(
      f"the generator makes {gen_shape} images but the classifier's test images "
      f"are {x01.shape[1:]}; train the generator on the same dataset config"
    )
  h, w = x01.shape[1:3]
  seeds = [int(s) for s in config.seeds]
  t_start = time.perf_counter()
  seconds: dict[str, float] = {}

  # The map functions: (x, pred, index, seed) -> scores [B, H, W].
  fns = {}
  fns["random_pixels"] = lambda x, p, idx, s: jax.vmap(lambda k: jax.random.uniform(k, (h, w)))(
    _image_keys(s, idx)
  )
  bs = int(config.blob_scale)
  fns["random_blobs"] = lambda x, p, idx, s: jax.vmap(
    lambda k: jax.image.resize(
      jax.random.uniform(k, (max(h // bs, 1), max(w // bs, 1))), (h, w), "bilinear"
    )
  )(_image_keys(s, idx))
  if "masker" in methods:
    mc, variant = masker_config(config, workdir), config.masker_variant
    mask_fn, mstate = localization.trained_masker(mc, workdir, variant, progress=progress)
    fns["masker"] = lambda x, p, idx, s: mask_fn(mstate, to_input(x))[0]
  for name, method in methods.items():
    if method is None:
      continue
    # A map's score is |map| summed over channels (a mask's single channel as it is).
    if A.needs_key(name):
      fns[name] = lambda x, p, idx, s, m=method: jnp.abs(
        m(apply_fn, params, to_input(x), p, key=_image_keys(s, idx))
      ).sum(-1)
    else:
      fns[name] = lambda x, p, idx, s, m=method: jnp.abs(m(apply_fn, params, to_input(x), p)).sum(
        -1
      )
  predict = jax.jit(lambda x: apply_fn(params, to_input(x)).argmax(-1))
  preds = np.concatenate(
    [
      np.asarray(predict(x01[i : i + config.batch_size]))
      for i in range(0, n, int(config.batch_size))
    ]
  )

  num_samples = int(config.num_samples)
  predict_flat = lambda v: apply_fn(params, to_input(v)).argmax(-1)

  @jax.jit
  def decide(x, scores, area, pred, label, idx, seed_key):
    mask = A.keep_top(scores, area)
    keys = jax.vmap(lambda i: jax.random.fold_in(seed_key, i))(idx)
    rec = A.reconstruct(gen, x, mask, key=keys, num_samples=num_samples)
    top = predict_flat(rec.reshape((-1,) + x.shape[1:])).reshape(num_samples, -1)
    return jnp.sum(top == pred[None]), jnp.sum(top == label[None])

  batches = [(i, min(i + int(config.batch_size), n)) for i in range(0, n, int(config.batch_size))]
  areas = [float(a) for a in config.areas]
  counts: dict[str, dict[float, list[tuple[int, int]]]] = {}

  def score_method(name):
    fn = jax.jit(fns[name], static_argnums=(3,))
    seeded = name in ("random_pixels", "random_blobs") or (
      name not in OWN_ROWS and A.needs_key(name)
    )
    per_seed = seeds if seeded else [None]
    totals = {a: [[0, 0] for _ in seeds] for a in areas}
    t0 = time.perf_counter()
    bar = tqdm(
      total=len(per_seed) * n, desc=name, disable=not progress, dynamic_ncols=True, mininterval=0.5
    )
    for si, seed in enumerate(per_seed):
      for lo, hi in batches:
        x, idx = x01[lo:hi], np.arange(lo, hi)
        scores = fn(x, preds[lo:hi], idx, seed if seed is not None else 0)
        for a in areas:
          # Deterministic maps are computed once and reconstructed under every seed.
          for sj, s in [(si, seed)] if seed is not None else list(enumerate(seeds)):
            kept, right = decide(
              x,
              scores,
              a,
              preds[lo:hi],
              labels[lo:hi],
              idx,
              jax.random.fold_in(jax.random.key(s), 1_000_003),
            )
            totals[a][sj][0] += int(kept)
            totals[a][sj][1] += int(right)
        bar.update(hi - lo)
    bar.close()
    counts[name] = totals
    seconds[name] = time.perf_counter() - t0

  for name in methods:
    score_method(name)

  def stats(per_seed):
    kept = np.asarray([k for k, _ in per_seed], np.float64) / (n * num_samples)
    acc = np.asarray([r for _, r in per_seed], np.float64) / (n * num_samples)
    return {
      "kept_mean": float(kept.mean()),
      "kept_std": float(kept.std()),
      "accuracy_mean": float(acc.mean()),
      "accuracy_std": float(acc.std()),
      "kept_per_seed": kept.tolist(),
    }

  rows = {name: {str(a): stats(counts[name][a]) for a in areas} for name in methods}
  none = [[0, 0] for _ in seeds]
  for sj, s in enumerate(seeds):
    for lo, hi in batches:
      kept, right = decide(
        x01[lo:hi],
        jnp.zeros((hi - lo, h, w)),
        0.0,
        preds[lo:hi],
        labels[lo:hi],
        np.arange(lo, hi),
        jax.random.fold_in(jax.random.key(s), 1_000_003),
      )
      none[sj][0] += int(kept)
      none[sj][1] += int(right)

  loc = None
  if config.localization and "optimized_mask" in methods:
    om = methods["optimized_mask"]
    t0 = time.perf_counter()
    maps_fn = lambda x, label: (
      lambda p: (
        om(apply_fn, params, x, p, key=jax.random.split(jax.random.key(seeds[0]), x.shape[0]))[
          ..., 0
        ],
        (p == label).astype(jnp.float32),
      )
    )(apply_fn(params, x).argmax(-1))
    loc = train.evaluate_localization(
      maps_fn,
      test,
      batch_size=int(config.batch_size),
      normalize=lambda im: np.asarray(to_input(jnp.asarray(im, jnp.float32))),
      apply_fn=apply_fn,
      params=params,
      num_images=n,
      progress=progress,
      desc="localisation",
    )
    seconds["localization"] = time.perf_counter() - t0

  path = os.path.join(workdir, RESULT_FILE)
  result = {
    "rows": rows,
    "none_kept": stats(none),
    "localization": loc,
    "classifier_accuracy": info["accuracy"],
    "clean_accuracy": float(np.mean(preds == labels)),
    "num_images": n,
    "num_samples": num_samples,
    "seeds": seeds,
    "areas": areas,
    "seconds": seconds,
    "total_seconds": time.perf_counter() - t_start,
    "path": path,
    "config": json.loads(config.to_json_best_effort()),
  }
  _common.write_result(path, result)
  return result


def example(
  config,
  workdir: str,
  images: np.ndarray,
  maps: np.ndarray,
  predicted: np.ndarray,
  apply_fn,
  params,
) -> dict[str, Any]:
  """Reconstructions of a few images from the top of their maps, for a figure.

  Each image keeps the first of ``config.areas`` of its map's pixels; the
  generator in the generator workdir samples the rest ``num_samples`` times
  (keys from ``config.seeds[0]``), and the classifier classifies each sample.

  Args:
    config: a ``reconstruction_digits`` config; workdir: the classifier's.
    images: ``[N, H, W, C]`` in ``[0, 1]``; maps: ``[N, H, W]`` scores;
    predicted: int ``[N]``, the classifier's class of each clean image.
    apply_fn, params: the classifier.

  Returns:
    ``{'images', 'keep': [N, H, W] in {0, 1}, 'samples': [S, N, H, W, C],
    'predicted': [S, N], 'clean': [N], 'kept': [N] share of samples whose
    decision is the clean one, 'area'}``.
  """
  from jaxsal import train

  n = len(images)
  area = float(config.areas[0])
  gen = train.load_generator(generator_workdir(config, workdir))
  x01 = jnp.asarray(images)
  keep = A.keep_top(jnp.asarray(maps), area)
  keys = jax.random.split(jax.random.key(int(config.seeds[0])), n)
  samples = A.reconstruct(gen, x01, keep, key=keys, num_samples=int(config.num_samples))
  flat = np.asarray(samples.reshape((-1,) + x01.shape[1:])) * 255.0
  pred = jax.jit(apply_fn)(params, jnp.asarray(_common.normalize(config.classifier, flat)))
  pred = np.asarray(pred.argmax(-1)).reshape(samples.shape[:2])
  clean = np.asarray(predicted)
  return {
    "images": np.asarray(x01),
    "keep": np.asarray(keep, np.float32),
    "samples": np.asarray(samples, np.float32),
    "predicted": pred,
    "clean": clean,
    "kept": (pred == clean[None]).mean(0),
    "area": area,
  }


def summary(result: dict[str, Any]) -> str:
  """The table and a closing line, as ``jaxsal reconstruction`` prints them."""
  return (
    f"{format_table(result)}\n"
    f"jaxsal: reconstructions of {result['num_images']} test images ({result['num_samples']} "
    f"samples each, {len(result['seeds'])} seeds; the classifier's decision kept, mean ± std "
    f"over seeds, %) in {result['total_seconds']:.1f}s; results in {result['path']}"
  )


def format_table(result: dict[str, Any]) -> str:
  """Decision kept (mean ± std over seeds, in %) per method and area, and the true-label accuracy."""
  areas = [str(a) for a in result["areas"]]
  head = (
    ["method"] + [f"kept @{float(a):.0%}" for a in areas] + [f"acc @{float(a):.0%}" for a in areas]
  )
  fmt = lambda s, k: f"{100 * s[k + '_mean']:.1f} ± {100 * s[k + '_std']:.1f}"
  rows = [
    [name] + [fmt(r[a], "kept") for a in areas] + [fmt(r[a], "accuracy") for a in areas]
    for name, r in result["rows"].items()
  ]
  nk = result["none_kept"]
  rows.append(
    ["none kept (area 0)"] + [fmt(nk, "kept")] * len(areas) + [fmt(nk, "accuracy")] * len(areas)
  )
  lines = _common.text_table(head, rows)
  loc = result.get("localization")
  if loc:
    lines.append(
      f"optimized_mask localisation on {loc['count']} images: LE {loc['le']:.3f} "
      f"OM {loc['om']:.3f} F1 {loc['f1']:.3f} PxAP {loc['pxap']:.3f} "
      f"SM {loc['sm']:.3f} mean mask {loc['area']:.3f}"
    )
  return "\n".join(lines)
