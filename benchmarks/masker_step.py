"""The cost of one CA masker step relative to one plain classifier training step.

On the same model, batch and images, in one run, it times

* ``classifier``: ``jaxsal.train.make_train_step`` (one SGD step on
  ``CE(f(x), y)``), and
* ``masker FIX`` / ``masker CA``: ``jaxsal.train.make_masker_step`` with a
  fixed classifier, and with the classifier trained alongside (its clean
  step, three classifier passes for the mask, and the masked classifier
  step, which the step computes every time and keeps with probability 0.5).

Each step is jitted (state donated, as in training), compiled and run once
before timing; then ``--repeats`` rounds time every step back to back, and
the table shows the median seconds per step, images per second and the
ratio to the classifier step. Models: the small CNN at 64x64 (batch 64, the
``masker_digits`` setting) and ResNet-50 at ``--resnet-size`` (batch
``--resnet-batch``), random weights.

Usage::

  python benchmarks/masker_step.py
  python benchmarks/masker_step.py --models small_cnn --repeats 3 --json out.json
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
import numpy as np
import optax

from jaxsal import models, train


def setups(args):
  out = []
  if "small_cnn" in args.models:
    s = args.small_size
    out.append(
      (
        "small_cnn",
        models.SmallCNN(num_classes=10),
        (s, s, 1),
        args.small_batch,
        ("l1", "l2", "l3", "l4"),
      )
    )
  if "resnet50" in args.models:
    s = args.resnet_size
    out.append(
      (
        "resnet50",
        models.get_model("resnet50", num_classes=1000),
        (s, s, 3),
        args.resnet_batch,
        ("l3", "l4"),
      )
    )
  return out


def bench(args) -> list[dict]:
  rows = []
  for name, clf, shape, batch_size, layers in setups(args):
    rng = np.random.default_rng(0)
    batch = {
      "image": rng.standard_normal((batch_size,) + shape).astype(np.float32),
      "label": rng.integers(0, 10, batch_size).astype(np.int32),
    }
    variables = models.init_model(clf, jax.random.key(0), (1,) + shape)
    masker = models.Masker(layers=layers)
    ctx = optax.sgd(1e-3, momentum=0.9)
    mtx = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1e-3))
    steps = {}
    # Every state gets its own copy of the weights: the steps donate their state.
    fresh = lambda: jax.tree.map(jax.numpy.array, variables)
    variables = fresh()
    cstate = train.TrainState(
      step=jax.numpy.zeros((), jax.numpy.int32),
      params=variables["params"],
      model_state={k: v for k, v in variables.items() if k != "params"},
      opt_state=ctx.init(variables["params"]),
    )
    steps["classifier"] = (jax.jit(train.make_train_step(clf, ctx), donate_argnums=0), cstate)
    for label, ca in (("masker FIX", False), ("masker CA", True)):
      tx = ctx if ca else optax.set_to_zero()
      st = train.create_masker_state(masker, mtx, clf, fresh(), tx, jax.random.key(1), (1,) + shape)
      fn = jax.jit(
        train.make_masker_step(clf, masker, mtx, tx, train_classifier=ca), donate_argnums=0
      )
      steps[label] = (fn, st)
    states, times = {}, {k: [] for k in steps}
    for k, (fn, st) in steps.items():
      t0 = time.perf_counter()
      st, m = fn(st, batch)
      jax.block_until_ready(m)
      states[k] = st
      print(f"{name} {k}: compiled and ran once in {time.perf_counter() - t0:.1f}s", flush=True)
    for _ in range(args.repeats):
      for k, (fn, _) in steps.items():
        t0 = time.perf_counter()
        states[k], m = fn(states[k], batch)
        jax.block_until_ready(m)
        times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["classifier"])
    for k, ts in times.items():
      med = statistics.median(ts)
      rows.append(
        {
          "model": name,
          "input": "x".join(map(str, shape)),
          "batch": batch_size,
          "step": k,
          "seconds": med,
          "images_per_sec": batch_size / med,
          "ratio_to_classifier_step": med / base,
          "repeats": len(ts),
        }
      )
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
    "--models", nargs="+", default=["small_cnn", "resnet50"], choices=["small_cnn", "resnet50"]
  )
  p.add_argument("--small-size", type=int, default=64)
  p.add_argument("--small-batch", type=int, default=64)
  p.add_argument("--resnet-size", type=int, default=64)
  p.add_argument("--resnet-batch", type=int, default=16)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--json", default=None)
  args = p.parse_args(argv)
  if args.repeats < 1:
    p.error(f"--repeats must be >= 1; got {args.repeats}")
  rows = bench(args)
  print(
    f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
    f"jax {jax.__version__} on {jax.devices()[0].platform}"
  )
  print(
    f"{'model':10} {'input':9} {'batch':>5} {'step':12} {'s/step':>8} {'img/s':>8} "
    f"{'x classifier step':>17}"
  )
  for r in rows:
    print(
      f"{r['model']:10} {r['input']:9} {r['batch']:>5} {r['step']:12} {r['seconds']:8.4f} "
      f"{r['images_per_sec']:8.1f} {r['ratio_to_classifier_step']:17.2f}"
    )
  if args.json:
    with open(args.json, "w") as f:
      json.dump(
        {
          "rows": rows,
          "machine": f"{os.cpu_count()} cores, {jax.devices()[0].platform}",
          "jax": jax.__version__,
        },
        f,
        indent=2,
      )
  return rows


if __name__ == "__main__":
  main()
