"""The grid pointing game experiment: base methods alone, with CGI and with VAR.

For every grid, each base method's maps for *all* classes come from one
compiled call; the three variants of every cell's map are then read off
them: the base map of the cell's class (alone), its competitive map against
all classes (CGI, Gupta & Arora 2019) and its VAR map over the grid's cell
classes (Walter et al. 2025). Each map is scored by the share of its
positive mass inside its cell.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxsal import _checks, metrics
from jaxsal import attribution as A
from jaxsal.experiments import _common

COMMAND = "grid-pointing"
HELP = "the grid pointing game: methods alone, with CGI and with VAR"
DEFAULT_CONFIG = "grid_pointing_digits"
CONFIG_HELP = "an experiment config (grid_pointing_digits[:test]) or a .py path"
WORKDIR_HELP = "the classifier's workdir: trained there if it holds no checkpoint"
SET_EXAMPLE = "num_grids=50"

VARIANTS = ("alone", "cgi", "var")
RESULT_FILE = "grid_pointing.json"


def validate(config) -> None:
  """Checks the experiment's own entries before anything runs."""
  from jaxsal import train

  train.validate_config(config.classifier)
  if not config.grid_sizes:
    raise ValueError("grid_sizes must name at least one grid size, e.g. (2, 3)")
  for n in config.grid_sizes:
    _checks.check_positive_int(n, "grid_sizes entry")
    if n < 2:
      raise ValueError(
        f"grid_sizes entries must be >= 2 (a 1x1 grid has nothing to point between); got {n}"
      )
  _common.get_methods(config.methods, classifier=config.classifier)
  for key in ("num_grids", "num_images", "batch_size"):
    _checks.check_positive_int(config[key], key)
  if not 0.0 <= config.min_confidence <= 1.0:
    raise ValueError(f"min_confidence must be in [0, 1]; got {config.min_confidence}")
  if config.smooth and (config.smooth < 0 or config.smooth % 2 == 0):
    raise ValueError(f"smooth must be 0 or an odd window size; got {config.smooth}")
  A.var(A.gradient, temperature=config.temperature, tau=config.tau)  # checks both


def variant_maps(
  method, apply_fn, params, grids, labels, *, temperature: float, tau: float, key=None
) -> dict[str, jax.Array]:
  """Each cell's class explained on its grid: alone, with CGI and with VAR.

  Args:
    method: ``fn(apply_fn, params, x, target, *, key=None)``, e.g. from
      ``jaxsal.attribution.get_method``.
    apply_fn, params: the classifier.
    grids: ``[G, H, W, C]`` model inputs; labels: int ``[G, n*n]``, each
      cell's class.
    temperature, tau: VAR's settings.
    key: for a stochastic method, ``[G]`` keys.

  Returns:
    ``{'alone' | 'cgi' | 'var': [n*n, G, H, W, C]}``: every variant of the
    map of cell ``k``'s class for each grid. All classes' maps come from one
    call; CGI competes them, VAR contrasts the grid's cell classes.
  """
  g = grids.shape[0]
  rows, cols = labels.T, jnp.arange(g)[None, :]  # [n*n, G] each
  extra = {} if key is None else {"key": key}
  maps = A.all_classes(method)(apply_fn, params, grids, **extra)  # [K, G, H, W, C]
  alone = maps[rows, cols]
  return {
    "alone": alone,
    "cgi": A.competition_from_maps(maps)[rows, cols],
    "var": A.var_from_maps(alone, temperature=temperature, tau=tau),
  }


def make_scores_fn(apply_fn, config, n: int):
  """``fn(params, grids [G, H, W, C], labels [G, n*n]) -> {'method/variant': (scores, empty)}``.

  ``scores`` is float ``[G, n*n]``, each cell's map's pointing score;
  ``empty`` bool ``[G, n*n]``, whether that map has no positive mass (its
  score is then 0).
  """
  cells = n * n
  methods = _common.get_methods(config.methods)

  def fn(params, grids, labels):
    g = grids.shape[0]
    out = {}
    for name, method in methods.items():
      key = _common.method_key(name, int(config.seed), g).get("key")
      variants = variant_maps(
        method,
        apply_fn,
        params,
        grids,
        labels,
        temperature=config.temperature,
        tau=config.tau,
        key=key,
      )
      for variant, m in variants.items():
        score = jax.vmap(
          lambda mk, k: metrics.grid_pointing_game(
            mk, jnp.full((g,), k), n=n, smooth=int(config.smooth)
          )
        )(m, jnp.arange(cells))
        # Maps with no positive mass score 0; count them apart (VAR's threshold can empty a map).
        empty = jnp.maximum(m.sum(-1), 0.0).reshape(cells, g, -1).max(-1) <= 0
        out[f"{name}/{variant}"] = (score.T, empty.T)
    return out

  return fn


def play(
  config,
  apply_fn,
  params,
  images: np.ndarray,
  labels: np.ndarray,
  *,
  mesh=None,
  progress: bool = True,
) -> dict[str, Any]:
  """Plays the grid pointing game for a classifier: no training, nothing written.

  Args:
    config: a ``grid_pointing_digits`` config (its ``classifier`` is not used).
    apply_fn, params: the classifier (a tapped ``apply_fn`` for Grad-CAM).
    images: ``[N, H, W, C]`` model inputs (normalised); labels: int ``[N]``.
    mesh: grids are split over its data axis; default all local devices.
    progress: progress bars and a line about the confidence filter.

  Returns:
    ``{'grids': {'2x2': {'method/variant': summary}}, 'images_used',
    'images_seen', 'seconds'}``, summaries as ``metrics.summarize_pointing``
    plus ``empty_share``, the share of maps with no positive mass.
  """
  from jaxsal import data, parallel

  mesh = parallel.make_mesh() if mesh is None else mesh
  params = parallel.replicate(params, mesh)
  say = (lambda s: print(s, flush=True)) if progress else (lambda s: None)
  if config.confidence_filter:
    keep = metrics.confident_correct(
      jax.jit(apply_fn), params, images, labels, min_confidence=float(config.min_confidence)
    )
    say(
      f"jaxsal: {int(keep.sum())} of {len(keep)} test images are classified correctly with "
      f"probability >= {config.min_confidence}; grids are drawn from them"
    )
  else:
    keep = np.ones(len(labels), bool)
  width = mesh.shape[parallel.DATA_AXIS]
  batch = -(-int(config.batch_size) // width) * width
  results: dict[str, Any] = {
    "images_used": int(keep.sum()),
    "images_seen": int(len(keep)),
    "grids": {},
    "seconds": {},
  }
  for n in config.grid_sizes:
    t1 = time.perf_counter()
    grids = data.compose_grids(
      images[keep], labels[keep], n=n, num_grids=int(config.num_grids), seed=int(config.seed) + n
    )
    fn = jax.jit(make_scores_fn(apply_fn, config, n))
    total = len(grids["image"])
    scores: dict[str, list] = {}
    empties: dict[str, list] = {}
    bar = tqdm(total=total, desc=f"{n}x{n} grids", disable=not progress, dynamic_ncols=True)
    for s in range(0, total, batch):
      idx = np.arange(s, s + batch).clip(max=total - 1)  # the last batch repeats a grid
      # Every process composed the same grids; each passes on its own rows.
      mine = idx[parallel.local_rows(mesh, batch)]
      out = fn(
        params,
        parallel.shard_batch(grids["image"][mine], mesh),
        parallel.shard_batch(grids["labels"][mine], mesh),
      )
      real = min(batch, total - s)
      for k, (v, e) in parallel.gather(out).items():
        scores.setdefault(k, []).append(np.asarray(v)[:real])
        empties.setdefault(k, []).append(np.asarray(e)[:real])
      bar.update(real)
    bar.close()
    cells = np.broadcast_to(np.arange(n * n), (total, n * n)).reshape(-1)
    summary = {}
    for k, v in scores.items():
      summary[k] = metrics.summarize_pointing(np.concatenate(v).reshape(-1), cells, n=n)
      summary[k]["empty_share"] = float(np.concatenate(empties[k]).mean())
    results["grids"][f"{n}x{n}"] = summary
    results["seconds"][f"{n}x{n}"] = time.perf_counter() - t1
  return results


def run(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Trains (or reuses) the classifier in ``workdir``, plays the game, writes the results.

  Args:
    config: a ``grid_pointing_digits`` config.
    workdir: the classifier's workdir (checkpoints are reused when present);
      the results go to ``workdir/grid_pointing.json``.
    progress: progress bars and per-stage lines.

  Returns:
    ``play``'s results plus the classifier's accuracy, the config, and
    ``path``, where they were written.

  Raises:
    ValueError: a bad config (before anything is written).
  """
  validate(config)
  t0 = time.perf_counter()
  apply_fn, params, info = _common.trained_classifier(config.classifier, workdir, progress=progress)
  images, labels = _common.test_images(config.classifier, int(config.num_images))
  results = play(config, apply_fn, params, images, labels, mesh=info["mesh"], progress=progress)
  results["seconds"]["classifier"] = info["seconds"]
  results["classifier_accuracy"] = info["accuracy"]
  results["config"] = json.loads(config.to_json_best_effort())
  path = os.path.join(workdir, RESULT_FILE)
  _common.write_result(path, results)
  results["path"] = path
  results["seconds"]["total"] = time.perf_counter() - t0
  return results


def example(config, apply_fn, params, *, seed: int = 0) -> dict[str, Any]:
  """One 2x2 grid of test digits, explained for each cell's class: alone, with CGI, with VAR.

  The method is gradient x input if ``config.methods`` has it, else its
  first method. The digits are drawn from the test images the model
  classifies correctly with the game's confidence (all test images if fewer
  than 4 classes are left, as with an untrained model).

  Returns:
    ``{'image': [H, W, C] in [0, 1], 'classes': [4], 'method',
    'maps': {variant: [4, H, W]}}`` (maps summed over channels).
  """
  from jaxsal import data

  methods = _common.get_methods(config.methods)
  name = "gradient_x_input" if "gradient_x_input" in methods else next(iter(methods))
  images, labels = _common.test_images(config.classifier, 500)
  keep = metrics.confident_correct(
    jax.jit(apply_fn), params, images, labels, min_confidence=float(config.min_confidence)
  )
  if len(np.unique(labels[keep])) >= 4:
    images, labels = images[keep], labels[keep]
  grids = data.compose_grids(images, labels, n=2, num_grids=1, seed=seed)
  key = _common.method_key(name, seed, 1).get("key")

  @jax.jit
  def fn(p, x):
    maps = variant_maps(
      methods[name],
      apply_fn,
      p,
      x,
      jnp.asarray(grids["labels"]),
      temperature=config.temperature,
      tau=config.tau,
      key=key,
    )
    return {v: m[:, 0] for v, m in maps.items()}

  out = jax.device_get(fn(params, jnp.asarray(grids["image"])))
  d = config.classifier.dataset
  raw = grids["image"][0] * np.asarray(d.std) + np.asarray(d.mean)
  return {
    "image": np.clip(raw, 0, 1),
    "classes": grids["labels"][0].tolist(),
    "method": name,
    "maps": {k: np.asarray(v).sum(-1) for k, v in out.items()},
  }


def summary(results: dict[str, Any]) -> str:
  """The table and a closing line, as ``jaxsal grid-pointing`` prints them."""
  num_grids = results["config"]["num_grids"]
  return (
    f"{format_table(results)}\n"
    f"jaxsal: grid pointing game (mean ± standard error over maps; {num_grids} grids per size) "
    f"in {results['seconds']['total']:.1f}s; results in {results['path']}"
  )


def format_table(results: dict[str, Any]) -> str:
  """The results as text: mean ± sem per method, variant and grid size, then the empty maps."""
  sizes = list(results["grids"])
  methods = list(dict.fromkeys(k.split("/")[0] for r in results["grids"].values() for k in r))
  head = ["method"] + [f"{s} {v}" for s in sizes for v in VARIANTS]

  def table(cell, last=None):
    rows = [
      [m] + [cell(results["grids"][s].get(f"{m}/{v}")) for s in sizes for v in VARIANTS]
      for m in methods
    ] + ([last] if last else [])
    return _common.text_table(head, rows)

  chance = ["chance"] + [f"{1 / int(s.split('x')[0]) ** 2:.3f}" for s in sizes for _ in VARIANTS]
  scores = table(lambda r: "-" if r is None else f"{r['mean']:.3f} ± {r['sem']:.3f}", chance)
  empty = table(lambda r: "-" if r is None or "empty_share" not in r else f"{r['empty_share']:.3f}")
  return "\n".join(
    ["pointing score (mean ± standard error)"]
    + scores
    + ["", "share of maps with no positive mass (they score 0)"]
    + empty
  )
