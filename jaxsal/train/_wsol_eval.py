"""Localisation metrics of any saliency map over a whole split, batch by batch.

Used for a masker's evaluation during and after training, and for the
baselines it is compared with (the centre box, attribution methods).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

METRICS = ("le", "om", "f1", "f1a", "sm", "area", "accuracy")


@functools.partial(jax.jit, static_argnums=(0, 1))
def _batch_sums(maps_fn, apply_fn, params, maps_args, x, label, box, gt_mask, valid):
  from jaxsal import metrics

  maps, correct = maps_fn(x, label, *maps_args)
  s = metrics.localization_scores(
    maps, box[:, None], gt_mask, correct, apply_fn=apply_fn, params=params, x=x, target=label
  )
  counts = jax.vmap(lambda m, g: metrics.pxap_counts(m[None], g[None]))(maps, gt_mask)
  sums = {k: jnp.sum(s[k] * valid) for k in ("le", "om", "f1", "f1a", "sm", "area")}
  sums["accuracy"] = jnp.sum(correct * valid)
  sums["count"] = jnp.sum(valid)
  sums["pxap"] = jax.tree.map(lambda c: jnp.tensordot(valid, c, 1), counts)
  return sums


def evaluate_localization(
  maps_fn: Callable,
  source,
  *,
  batch_size: int,
  normalize: Callable[[np.ndarray], np.ndarray],
  apply_fn: Callable,
  params: Any,
  num_images: int | None = None,
  progress: bool = False,
  desc: str = "localisation",
  maps_args: tuple = (),
  mesh=None,
) -> dict[str, float]:
  """LE, OM, F1, F1a, SM, PxAP, mean area and accuracy of ``maps_fn``'s maps over ``source``.

  Args:
    maps_fn: ``maps_fn(x, label, *maps_args) -> (maps [B, H, W] in [0, 1],
      correct [B])``, pure (it is jitted here together with the metrics);
      ``correct`` is 1 where the explained classifier's top-1 is right. The
      compiled program is cached on ``maps_fn`` and ``apply_fn``: pass what
      changes between calls (a train state) in ``maps_args``, not in a new
      closure, and a second evaluation compiles nothing.
    source: a random-access source of dicts with ``image`` (uint8),
      ``label``, ``box`` ``[4]`` and ``mask`` ``[H, W]``.
    batch_size: images per compiled call (the last batch is padded).
    normalize: uint8-scaled float images in [0, 1] -> the classifier's inputs.
    apply_fn, params: the classifier the saliency metric classifies crops with.
    num_images: the first ``num_images`` of ``source`` (all if None).
    progress: show a progress bar.
    maps_args: arrays (pytrees) passed on to ``maps_fn``.
    mesh: the images are split over its ``data`` axis (the batch is rounded
      up to a multiple of its width); default all devices. In a
      multi-process job each process reads only its share of every batch.

  Returns:
    The mean over images of each of ``METRICS``, ``pxap`` over all pixels,
    and ``count``. Lower is better for LE, OM and SM.
  """
  from jaxsal import data, metrics, parallel

  n = len(source) if num_images is None else min(int(num_images), len(source))
  if n <= 0:
    raise ValueError(
      f"num_images must be positive and the source non-empty; got {num_images} of {len(source)}"
    )
  mesh = parallel.make_mesh() if mesh is None else mesh
  # Every device of the data axis gets whole images: the batch is rounded up
  # to a multiple of its width (the padding does not count).
  width = mesh.shape[parallel.DATA_AXIS]
  batch_size = -(-int(batch_size) // width) * width
  params = parallel.replicate(params, mesh)
  maps_args = parallel.replicate(tuple(maps_args), mesh)
  totals = None
  bar = tqdm(
    total=n,
    desc=desc,
    disable=not (progress and jax.process_index() == 0),
    dynamic_ncols=True,
    mininterval=0.5,
  )
  for b in data.eval_batches(source, batch_size=batch_size, num_examples=n):
    valid = b["valid"]
    x = normalize(b["image"]).astype(np.float32)
    # Padding images get a valid full-image box so that the metrics stay finite.
    h, w = x.shape[1:3]
    box = np.where(valid[:, None] > 0, np.asarray(b["box"], np.int32), [[0, 0, h, w]])
    host = {
      "x": x,
      "label": b["label"],
      "box": box.astype(np.int32),
      "mask": np.asarray(b["mask"], np.float32),
      "valid": valid,
    }
    g = parallel.shard_batch(host, mesh)
    sums = _batch_sums(
      maps_fn,
      apply_fn,
      params,
      maps_args,
      g["x"],
      g["label"],
      g["box"],
      g["mask"],
      g["valid"],
    )
    totals = sums if totals is None else jax.tree.map(lambda a, c: a + c, totals, sums)
    bar.update(min(batch_size, n - bar.n))
  bar.close()
  totals = jax.device_get(totals)
  count = float(totals["count"])
  out = {k: float(totals[k]) / count for k in METRICS}
  out["pxap"] = float(metrics.pxap_from_counts(totals["pxap"]))
  out["count"] = int(count)
  return out
