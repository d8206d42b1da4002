"""Every class's map in one compiled call vs one call per class; memory of 1000 classes.

Part 1 (speed). On ``SmallCNN(num_classes=10)`` with random He-normal
weights and a batch of ``--batch-size`` random 64x64x1 images, for gradient,
gradient x input, integrated gradients, guided backprop, Grad-CAM, CGI and
VAR over all classes, it times

* ``all``: one jitted call that returns the maps of all 10 classes
  (``all_classes(method)``, ``cgi``, ``var(..., classes='all')``), against
* ``loop``: the jitted single-class method called once per class from
  Python (what the official CGI and VAR code does), with the competition /
  VAR step applied to the stacked maps by a second jitted call.

Both are compiled and run once before timing; then ``--repeats`` rounds each
time ``all`` and ``loop`` back to back (so load on a shared machine hits
both alike), and the table shows the medians and the ratio all / loop (< 1:
the one call is faster).

Part 2 (memory). ``competition(gradient, chunk_size=C)`` for a 1000-class
ResNet-18 at 64x64 (batch ``--resnet-batch``): the peak memory XLA reports for
the compiled program (``argument + output + temp - alias`` bytes, from
``jax.jit(f).lower(...).compile().memory_analysis()``) for several ``C``,
against all 1000 classes at once (compiled only, never run). The stated
bound: the chunked call over 1000 classes needs no more than the maps of
``C`` classes computed at once (``for_classes(gradient, range(C))``) plus
the three running maps (maximum, minimum, the target's), whatever the
number of classes. Each chunked call is then run once and timed.

Usage::

  python benchmarks/class_maps.py                    # both parts
  python benchmarks/class_maps.py --part speed --repeats 7
  python benchmarks/class_maps.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # benchmark this checkout

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal import attribution as A
from jaxsal import models

MiB = 1024 * 1024


def random_variables(model, shape, seed=0):
  """Variables with init_model's shapes and numpy values (He-normal kernels, unit scales).

  Compiling Flax's initialisers costs seconds per model on a 2-core CPU; the
  weights' values change neither time nor memory.
  """
  shapes = jax.eval_shape(lambda: models.init_model(model, jax.random.key(0), shape))
  rng = np.random.default_rng(seed)

  def draw(path, s):
    name = str(path[-1].key) if hasattr(path[-1], "key") else str(path[-1])
    if name == "kernel":
      fan_in = int(np.prod(s.shape[:-1]))
      return jnp.asarray(rng.standard_normal(s.shape) * np.sqrt(2.0 / fan_in), s.dtype)
    if name in ("scale", "var"):
      return jnp.ones(s.shape, s.dtype)
    return jnp.zeros(s.shape, s.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _block(tree):
  return jax.block_until_ready(tree)


def speed(batch: int, size: int, repeats: int, ig_steps: int) -> list[dict[str, Any]]:
  model = models.SmallCNN(num_classes=10)
  apply_fn, params = models.from_linen(model, random_variables(model, (1, size, size, 1)))
  x = jnp.asarray(np.random.default_rng(1).random((batch, size, size, 1)), jnp.float32)
  k = 10
  targets = [jnp.full((batch,), c, jnp.int32) for c in range(k)]
  base = {
    "gradient": (A.gradient, {}),
    "gradient_x_input": (A.gradient_x_input, {}),
    f"integrated_gradients ({ig_steps} steps)": (A.integrated_gradients, {"steps": ig_steps}),
    "guided_backprop": (A.guided_backprop, {}),
    "gradcam": (A.gradcam, {}),
  }
  rows = []
  cases = []
  for name, (m, kw) in base.items():
    one = jax.jit(lambda p, v, t, m=m, kw=kw: m(apply_fn, p, v, t, **kw))
    every = jax.jit(lambda p, v, m=m, kw=kw: A.all_classes(m)(apply_fn, p, v, **kw))
    cases.append((name, every, one, None))
  gxi = jax.jit(lambda p, v, t: A.gradient_x_input(apply_fn, p, v, t))
  comp = jax.jit(lambda maps: A.competition_from_maps(maps))
  cases.append(
    (
      "cgi (all classes' competitive maps)",
      jax.jit(lambda p, v: jax.vmap(lambda t: A.cgi(apply_fn, p, v, t))(jnp.stack(targets))),
      gxi,
      comp,
    )
  )
  varf = jax.jit(lambda maps: A.var_from_maps(maps))
  cases.append(
    (
      "var(gradient_x_input), all classes",
      jax.jit(lambda p, v: A.var_from_maps(A.all_classes(A.gradient_x_input)(apply_fn, p, v))),
      gxi,
      varf,
    )
  )

  for name, every, one, post in cases:

    def loop():
      maps = [one(params, x, t) for t in targets]
      return post(jnp.stack(maps)) if post is not None else maps

    t0 = time.perf_counter()
    got_all = _block(every(params, x))
    got_loop = _block(loop())
    first = time.perf_counter() - t0
    stacked = got_loop if post is not None else jnp.stack(got_loop)
    err = float(jnp.max(jnp.abs(got_all - stacked)))
    t_all, t_loop = [], []
    for _ in range(repeats):
      t0 = time.perf_counter()
      _block(every(params, x))
      t_all.append(time.perf_counter() - t0)
      t0 = time.perf_counter()
      _block(loop())
      t_loop.append(time.perf_counter() - t0)
    row = {
      "method": name,
      "all_s": statistics.median(t_all),
      "loop_s": statistics.median(t_loop),
      "compile_and_first_s": first,
      "max_abs_diff": err,
    }
    row["ratio"] = row["all_s"] / row["loop_s"]
    rows.append(row)
    print(
      f"{name:40s} all {row['all_s'] * 1e3:9.1f} ms   loop {row['loop_s'] * 1e3:9.1f} ms   "
      f"all/loop {row['ratio']:.2f}   max|diff| {err:.1e}",
      flush=True,
    )
  return rows


def _peak(compiled) -> dict[str, int]:
  m = compiled.memory_analysis()
  peak = (
    m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
  )
  return {"peak": int(peak), "temp": int(m.temp_size_in_bytes)}


def memory(batch: int, size: int, chunks: list[int]) -> dict[str, Any]:
  model = models.get_model("resnet18", num_classes=1000)
  apply_fn, params = models.from_linen(model, random_variables(model, (1, size, size, 3)))
  x = jnp.asarray(np.random.default_rng(2).random((batch, size, size, 3)), jnp.float32)
  t = jnp.arange(batch, dtype=jnp.int32) * 7
  map_bytes = int(np.prod(x.shape)) * 4
  print(
    f"ResNet-18, 1000 classes, batch {batch} at {size}x{size}: competition(gradient) "
    f"peak memory (XLA compiled analysis)",
    flush=True,
  )
  out: dict[str, Any] = {"chunks": []}
  for c in [None] + list(chunks):
    f = jax.jit(lambda p, v, t, c=c: A.competition(A.gradient, chunk_size=c)(apply_fn, p, v, t))
    t0 = time.perf_counter()
    compiled = f.lower(params, x, t).compile()
    comp_s = time.perf_counter() - t0
    pk = _peak(compiled)
    row = {"chunk_size": c, **pk, "compile_s": comp_s}
    label = "all 1000 at once" if c is None else f"chunks of {c}"
    msg = f"  {label:18s} peak {pk['peak'] / MiB:9.1f} MiB (temp {pk['temp'] / MiB:8.1f})"
    if c is None:
      msg += "  (compiled only, not run)"
    else:
      # The bound: C classes' maps computed at once (one vmapped call, no
      # competition), plus the three running maps (max, min, the target's).
      ref = _peak(
        jax.jit(lambda p, v, c=c: A.for_classes(A.gradient, np.arange(c))(apply_fn, p, v))
        .lower(params, x)
        .compile()
      )
      row["bound"] = ref["peak"] + 3 * map_bytes
      row["within_bound"] = pk["peak"] <= row["bound"]
      t0 = time.perf_counter()
      res = _block(compiled(params, x, t))
      row["run_s"] = time.perf_counter() - t0
      row["nonzero_fraction"] = float(jnp.mean(res != 0))
      msg += (
        f"  bound ({c} classes at once + 3 maps) {row['bound'] / MiB:7.1f} MiB: "
        f"{'within' if row['within_bound'] else 'ABOVE'}; ran in {row['run_s']:.1f} s"
      )
    out["chunks"].append(row)
    print(msg, flush=True)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--part", choices=("speed", "memory", "both"), default="both")
  p.add_argument("--batch-size", type=int, default=16)
  p.add_argument("--image-size", type=int, default=64)
  p.add_argument("--ig-steps", type=int, default=16)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--resnet-batch", type=int, default=2)
  p.add_argument("--resnet-size", type=int, default=64)
  p.add_argument("--chunks", type=int, nargs="+", default=[25, 100])
  p.add_argument("--json", default=None, help="also write the results here")
  args = p.parse_args(argv)
  env = {
    "jax": jax.__version__,
    "backend": jax.default_backend(),
    "device": str(jax.devices()[0].device_kind),
    "cpu_count": os.cpu_count(),
    "machine": platform.machine(),
  }
  print(
    f"jax {env['jax']} on {env['backend']} ({env['device']}), {env['cpu_count']} CPUs", flush=True
  )
  results: dict[str, Any] = {"env": env, "args": vars(args)}
  if args.part in ("speed", "both"):
    print(
      f"\n10 classes, SmallCNN, batch {args.batch_size} at {args.image_size}x{args.image_size}: "
      f"one all-class call vs the single-class method once per class "
      f"(median of {args.repeats})",
      flush=True,
    )
    results["speed"] = speed(args.batch_size, args.image_size, args.repeats, args.ig_steps)
  if args.part in ("memory", "both"):
    print()
    results["memory"] = memory(args.resnet_batch, args.resnet_size, args.chunks)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
