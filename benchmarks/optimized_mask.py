"""Optimising per-input masks for a batch in one compiled call, against one image at a time.

``jaxsal.attribution.optimized_mask`` optimises every image's mask in one
``lax.scan`` (the per-image losses summed; Adam acts elementwise, so each
mask is the one it would get alone). The peer is the loop a per-input method
is usually run as: the same function, jitted for one image, called once per
image. Both are compiled and run once before timing; each is then timed
``--repeats`` times and the median is reported, with the ratio
batch / one-by-one, and how far the two results are apart: the final
losses and the masks. They optimise the same objective from the same
per-image starts, but batched and single-image convolutions round
differently, and over hundreds of Adam steps (which divide each gradient
entry by its own running scale) those differences grow in the loss's flat
directions: the losses stay equal to about 1e-3 while some masks move.

Model: the small CNN of ``cluttered_digits`` (random weights; the cost does
not depend on them) on 64x64 images, ``--batch`` images, ``--steps`` Adam
steps (the paper-style default is 300).

Usage::

  python benchmarks/optimized_mask.py
  python benchmarks/optimized_mask.py --batch 8 --steps 5 --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # benchmark this checkout

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal import attribution as A
from jaxsal import models


def bench(batch: int, steps: int, repeats: int, size: int = 64) -> dict:
  model = models.SmallCNN(num_classes=10)
  variables = models.init_model(model, jax.random.key(0), (1, size, size, 1))
  apply_fn, params = models.from_linen(model, variables)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(batch, size, size, 1)), jnp.float32)
  target = jnp.asarray(rng.integers(0, 10, size=batch), jnp.int32)
  keys = jax.random.split(jax.random.key(1), batch)
  fn = jax.jit(
    lambda x, t, k: A.optimized_mask(apply_fn, params, x, t, key=k, steps=steps, return_aux=True)
  )

  def batched():
    maps, aux = fn(x, target, keys)
    return jax.block_until_ready((maps, aux["loss"]))

  def one_by_one():
    outs = [fn(x[i : i + 1], target[i : i + 1], keys[i : i + 1]) for i in range(batch)]
    return jax.block_until_ready(
      (jnp.concatenate([m for m, _ in outs]), jnp.concatenate([a["loss"] for _, a in outs]))
    )

  t0 = time.perf_counter()
  whole = batched()
  compile_batched = time.perf_counter() - t0
  t0 = time.perf_counter()
  single = one_by_one()
  compile_single = time.perf_counter() - t0
  times = {"batched": [], "one_by_one": []}
  for _ in range(repeats):
    for name, f in (("batched", batched), ("one_by_one", one_by_one)):
      t0 = time.perf_counter()
      f()
      times[name].append(time.perf_counter() - t0)
  med = {k: statistics.median(v) for k, v in times.items()}
  return {
    "batch": batch,
    "steps": steps,
    "image": f"{size}x{size}x1",
    "batched_s": med["batched"],
    "one_by_one_s": med["one_by_one"],
    "ratio_batched_over_one_by_one": med["batched"] / med["one_by_one"],
    "first_call_s": {"batched": compile_batched, "one_by_one": compile_single},
    "max_abs_mask_difference": float(jnp.abs(whole[0] - single[0]).max()),
    "images_whose_masks_differ_by_over_1e-3": int(
      (jnp.abs(whole[0] - single[0]).reshape(batch, -1).max(1) > 1e-3).sum()
    ),
    "max_rel_loss_difference": float((jnp.abs(whole[1] - single[1]) / jnp.abs(single[1])).max()),
    "repeats": repeats,
  }


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--json", default=None, help="also write the result here")
  args = p.parse_args(argv)
  r = bench(args.batch, args.steps, args.repeats)
  print(f"{'way':<28} {'s / batch':>10} {'s / image':>10} {'x one-by-one':>13}")
  for name, key in (
    ("one compiled call (batch)", "batched_s"),
    ("one image at a time", "one_by_one_s"),
  ):
    print(
      f"{name:<28} {r[key]:>10.3f} {r[key] / r['batch']:>10.4f} {r[key] / r['one_by_one_s']:>13.3f}"
    )
  print(
    f"\n{r['batch']} images {r['image']}, {r['steps']} Adam steps, median of {r['repeats']}; "
    f"final losses agree to {r['max_rel_loss_difference']:.1e} (relative), masks to "
    f"{r['max_abs_mask_difference']:.1e} ({r['images_whose_masks_differ_by_over_1e-3']} "
    f"images differ by more than 1e-3)"
  )
  r["machine"] = (
    f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
    f"{jax.devices()[0].platform}"
  )
  r["jax"] = jax.__version__
  print(f"{r['machine']}, jax {jax.__version__}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(r, f, indent=2)
  return r


if __name__ == "__main__":
  main()
