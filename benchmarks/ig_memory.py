"""Peak memory of chunked integrated gradients: 256 steps in chunks of 16 vs 16 steps.

``jaxsal.attribution.integrated_gradients`` evaluates its ``steps`` points
``chunk_size`` at a time inside a ``lax.scan``, so its peak memory should
depend on ``chunk_size`` and not on ``steps``. This script checks that claim on
the default ``SmallCNN(num_classes=10)`` with a batch of float32 images
``[B, H, W, 1]`` (``B=32``, ``64x64`` by default) and random targets. The
weights are random: their shapes come from ``init_model`` (through
``jax.eval_shape``) and their values from numpy (He-normal), because compiling
Flax's initialisers costs about 13 s per process on a 2-core CPU and the
values change neither memory nor time. It runs four configurations, each in a
fresh Python process:

* ``baseline``   -- builds the model and the inputs, computes nothing;
* ``16 / all``   -- 16 steps, all at once (``chunk_size=None``): the reference;
* ``256 / 16``   -- 256 steps in 16 chunks of 16: the configuration under test;
* ``256 / all``  -- 256 steps at once (``chunk_size=None``): what chunking saves
  (informational, not part of the verdict).

Peak memory is measured two ways:

(a) XLA's compiled memory analysis, ``jax.jit(f).lower(...).compile()
    .memory_analysis()``: ``temp_size_in_bytes`` (the scratch buffer of the
    program) and the peak device memory of the compiled program,
    ``argument + output + temp - alias`` bytes. This is exact for what the
    program allocates and deterministic, and it is what the verdict uses by
    default (``--gate compiled``).

(b) The process's peak resident set size (``resource.getrusage(RUSAGE_SELF)
    .ru_maxrss``), read in each configuration's process after it has run the
    compiled function once (``block_until_ready``), minus the peak RSS of the
    ``baseline`` process. The table also shows the growth of the peak during
    the execution alone (``ru_maxrss`` after minus before the call), which
    leaves out the memory of tracing and compiling.

Caveats of (b): RSS counts every touched page of the process, so it includes
allocator slack (blocks that glibc malloc keeps after they are freed, per-thread
arenas, fragmentation), the memory of tracing and compiling (in "peak over
baseline"), and it does not count pages that were allocated but never touched.
``ru_maxrss`` is a high-water mark that can only be read, not reset, so a peak
reached while compiling hides a smaller one reached while executing. On this
small default problem the slack (tens of MiB, growing with the number of
executed chunks until it levels off) is comparable with the program's temp
buffer (96 MiB), so the RSS ratio is noisier and higher than the compiled
one. ``--malloc-mmap-threshold 131072`` makes glibc serve large blocks with
mmap and return them when freed, which removes most of that slack; on the
2-core CPU it took the RSS ratios from about 1.4-1.5 to about 1.15-1.2. So
does a larger batch, where the slack is relatively smaller (``--batch-size
128``: 1.15 with the default allocator). On GPU
or TPU, RSS measures host memory only; there the worker also reports the
device allocator's ``peak_bytes_in_use`` when ``memory_stats()`` has it (only
the CPU path has been run).

Wall times: ``compile`` is lowering plus compiling; ``1st run`` is the first
execution (it also page-faults in the temp buffer); with ``--repeats N > 1``,
``best run`` is the fastest of the N executions (the first one included).
Times on a shared machine vary with its load.

Usage::

  python benchmarks/ig_memory.py                       # CPU, B=32, 64x64
  python benchmarks/ig_memory.py --batch-size 64 --image-size 32
  python benchmarks/ig_memory.py --gate both           # also gate on RSS

The last line is ``PASS: ratio X <= 1.5`` (exit status 0) or ``FAIL: ...``
(exit status 1).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RESULT_MARKER = "IG_MEMORY_RESULT "
MiB = 1024 * 1024


def _maxrss_bytes() -> int:
  """Peak RSS of this process so far, in bytes (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(rss) if sys.platform == "darwin" else int(rss) * 1024


def worker(spec: dict[str, Any]) -> dict[str, Any]:
  """Runs one configuration in this (fresh) process and returns its measurements.

  Args:
    spec: ``kind`` (``'baseline'`` or ``'ig'``), ``batch_size``,
      ``image_size``, ``steps``, ``chunk_size`` (None for all at once),
      ``rule``, ``repeats``, ``seed``.

  Returns:
    A JSON-able dict: the environment (jax version, backend, device), the peak
    RSS after building the inputs, and for ``'ig'`` the compiled memory
    analysis, the peak RSS before and after the first execution, the device
    allocator's peak if it reports one, wall times, and ``sum(IG)``.
  """
  sys.path.insert(0, REPO_ROOT)  # benchmark the code of this checkout
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxsal.attribution import integrated_gradients
  from jaxsal.models import SmallCNN, from_linen, init_model

  b, s = spec["batch_size"], spec["image_size"]
  model = SmallCNN(num_classes=10)
  # Shapes from init_model, values drawn with numpy (He-normal, zero biases):
  # compiling Flax's initialisers costs ~13 s per process on a 2-core CPU, and
  # the weights' values change neither memory nor time.
  shapes = jax.eval_shape(lambda: init_model(model, jax.random.key(0), (1, s, s, 1)))
  rng = np.random.default_rng(spec["seed"])

  def he_normal(leaf):
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 0
    if fan_in == 0:
      return jnp.zeros(leaf.shape, leaf.dtype)
    return jnp.asarray(rng.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape), leaf.dtype)

  apply_fn, params = from_linen(model, jax.tree.map(he_normal, shapes))
  kx, kt = jax.random.split(jax.random.key(spec["seed"] + 1))
  x = jax.random.uniform(kx, (b, s, s, 1), jnp.float32)
  target = jax.random.randint(kt, (b,), 0, 10)
  jax.block_until_ready((params, x, target))
  dev = jax.devices()[0]
  out: dict[str, Any] = {
    "jax": jax.__version__,
    "jaxlib": getattr(jax.lib, "__version__", None) or __import__("jaxlib").__version__,
    "backend": jax.default_backend(),
    "device": f"{dev.platform}:{dev.id} {getattr(dev, 'device_kind', '')}".strip(),
    "num_devices": jax.device_count(),
    "cpu_count": os.cpu_count(),
    "python": sys.version.split()[0],
    "rss_built": _maxrss_bytes(),
  }
  if spec["kind"] == "baseline":
    return out

  steps, chunk, rule = spec["steps"], spec["chunk_size"], spec["rule"]

  def ig(p, xx, tt):
    return integrated_gradients(apply_fn, p, xx, tt, steps=steps, chunk_size=chunk, rule=rule)

  t0 = time.perf_counter()
  compiled = jax.jit(ig).lower(params, x, target).compile()
  out["compile_s"] = time.perf_counter() - t0
  ma = compiled.memory_analysis()
  for field in (
    "argument_size_in_bytes",
    "output_size_in_bytes",
    "alias_size_in_bytes",
    "temp_size_in_bytes",
    "generated_code_size_in_bytes",
  ):
    out[field] = int(getattr(ma, field, 0) or 0)
  out["compiled_peak"] = (
    out["argument_size_in_bytes"]
    + out["output_size_in_bytes"]
    + out["temp_size_in_bytes"]
    - out["alias_size_in_bytes"]
  )

  out["rss_before"] = _maxrss_bytes()
  t0 = time.perf_counter()
  attr = compiled(params, x, target).block_until_ready()
  out["first_run_s"] = time.perf_counter() - t0
  out["rss_after"] = _maxrss_bytes()
  times = [out["first_run_s"]]
  for _ in range(spec["repeats"] - 1):
    t0 = time.perf_counter()
    compiled(params, x, target).block_until_ready()
    times.append(time.perf_counter() - t0)
  out["best_run_s"] = min(times)
  out["ig_sum"] = float(jnp.sum(attr))
  stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    out["device_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
  return out


def run_in_fresh_process(
  spec: dict[str, Any], platform: str, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
  """Runs :func:`worker` in a new interpreter (so ``ru_maxrss`` starts afresh).

  Args:
    spec: the worker's configuration (see :func:`worker`).
    platform: ``JAX_PLATFORMS`` for the new process.
    extra_env: further environment variables for it.

  Returns:
    The worker's dict, or ``{'error': ...}`` when the process failed (e.g. it
    was killed for memory).
  """
  env = dict(os.environ, JAX_PLATFORMS=platform, **(extra_env or {}))
  cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec)]
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  for line in proc.stdout.splitlines():
    if line.startswith(_RESULT_MARKER):
      return json.loads(line[len(_RESULT_MARKER) :])
  tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
  return {"error": f"exit status {proc.returncode}: " + " | ".join(tail)}


def _mib(n: float | None) -> str:
  return "n/a" if n is None else f"{n / MiB:,.1f}"


def _ratio(a: float | None, b: float | None) -> float | None:
  return None if a is None or b is None or b <= 0 else a / b


def _fmt_ratio(r: float | None) -> str:
  return "n/a" if r is None else f"{r:.3f}x"


def main(argv: list[str] | None = None) -> int:
  """Runs the benchmark, prints the table and the verdict, returns the exit status."""
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument(
    "--platform",
    default="cpu",
    help="JAX_PLATFORMS for the worker processes (default cpu; only cpu has been run)",
  )
  p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
  p.add_argument("--image-size", type=int, default=64, help="image height = width (default 64)")
  p.add_argument(
    "--small-steps",
    type=int,
    default=16,
    help="steps of the reference run, all at once (default 16)",
  )
  p.add_argument(
    "--large-steps", type=int, default=256, help="steps of the chunked run (default 256)"
  )
  p.add_argument("--chunk-size", type=int, default=16, help="chunk of the large run (default 16)")
  p.add_argument("--rule", default="gausslegendre", help="integration rule (default gausslegendre)")
  p.add_argument(
    "--threshold", type=float, default=1.5, help="largest allowed ratio large/small (default 1.5)"
  )
  p.add_argument(
    "--gate",
    choices=("compiled", "rss", "both"),
    default="compiled",
    help="which measurement decides PASS/FAIL: (a) compiled (default), (b) rss, or both",
  )
  p.add_argument(
    "--repeats",
    type=int,
    default=1,
    help="executions per configuration; >1 adds a best-of column (default 1)",
  )
  p.add_argument(
    "--malloc-mmap-threshold",
    type=int,
    default=None,
    metavar="BYTES",
    help="set glibc's MALLOC_MMAP_THRESHOLD_ in the workers (a diagnostic: "
    "large blocks then go back to the OS when freed, which removes most "
    "allocator slack from RSS); default: the allocator as it is",
  )
  p.add_argument(
    "--no-unchunked",
    action="store_true",
    help="skip the informational large-steps run without chunks",
  )
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--_worker", help=argparse.SUPPRESS)
  args = p.parse_args(argv)

  if args._worker is not None:
    result = worker(json.loads(args._worker))
    print(_RESULT_MARKER + json.dumps(result), flush=True)
    return 0
  if (
    min(
      args.batch_size,
      args.image_size,
      args.small_steps,
      args.large_steps,
      args.chunk_size,
      args.repeats,
    )
    < 1
  ):
    p.error("sizes, steps, chunk size and repeats must be positive")

  common = dict(
    batch_size=args.batch_size,
    image_size=args.image_size,
    rule=args.rule,
    repeats=args.repeats,
    seed=args.seed,
  )
  configs = [
    ("baseline", dict(kind="baseline", steps=0, chunk_size=None)),
    (f"{args.small_steps} / all", dict(kind="ig", steps=args.small_steps, chunk_size=None)),
    (
      f"{args.large_steps} / {args.chunk_size}",
      dict(kind="ig", steps=args.large_steps, chunk_size=args.chunk_size),
    ),
  ]
  if not args.no_unchunked:
    configs.append(
      (f"{args.large_steps} / all", dict(kind="ig", steps=args.large_steps, chunk_size=None))
    )

  extra_env = (
    {}
    if args.malloc_mmap_threshold is None
    else {"MALLOC_MMAP_THRESHOLD_": str(args.malloc_mmap_threshold)}
  )
  t_start = time.perf_counter()
  results: dict[str, dict[str, Any]] = {}
  for name, spec in configs:
    print(f"running {name!r} in a fresh process ...", file=sys.stderr, flush=True)
    results[name] = run_in_fresh_process({**common, **spec}, args.platform, extra_env)

  names = [n for n, _ in configs]
  base, ref, test = (results[n] for n in names[:3])
  env = next((r for r in results.values() if "error" not in r), {})
  print("config:")
  print(
    f"  jax {env.get('jax')}  jaxlib {env.get('jaxlib')}  python {env.get('python')}  "
    f"backend {env.get('backend')}  device {env.get('device')} "
    f"(x{env.get('num_devices')})  os.cpu_count() {env.get('cpu_count')}"
  )
  print(
    f"  SmallCNN(num_classes=10), random He-normal weights; x float32 "
    f"[{args.batch_size}, {args.image_size}, {args.image_size}, 1]; rule {args.rule}; "
    f"each configuration in a fresh process"
  )
  if extra_env:
    print(f"  worker environment: {extra_env}")
  if "error" not in base:
    print(f"  baseline process (model + inputs only): peak RSS {_mib(base['rss_built'])} MiB")
  print()

  def rss_over_base(r):
    if "error" in r or "error" in base:
      return None
    return r["rss_after"] - base["rss_built"]

  ref_peak = ref.get("compiled_peak")
  ref_rss = rss_over_base(ref)
  header = (
    "steps / chunk",
    "XLA temp",
    "XLA peak",
    "ratio",
    "RSS peak-base",
    "ratio",
    "RSS exec growth",
    "compile s",
    "1st run s",
    "best run s",
    "sum(IG)",
  )
  if args.repeats == 1:
    header = header[:9] + header[10:]
  rows = []
  for name in names[1:]:
    r = results[name]
    if "error" in r:
      rows.append((name, "failed") + ("",) * (len(header) - 2))
      continue
    rows.append(
      (
        name,
        _mib(r["temp_size_in_bytes"]),
        _mib(r["compiled_peak"]),
        _fmt_ratio(_ratio(r["compiled_peak"], ref_peak)),
        _mib(rss_over_base(r)),
        _fmt_ratio(_ratio(rss_over_base(r), ref_rss)),
        _mib(r["rss_after"] - r["rss_before"]),
        f"{r['compile_s']:.2f}",
        f"{r['first_run_s']:.2f}",
        f"{r['best_run_s']:.2f}",
        f"{r['ig_sum']:.6g}",
      )
    )
    if args.repeats == 1:
      rows[-1] = rows[-1][:9] + rows[-1][10:]
  widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
  line = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths)))
  print("memory in MiB; ratios are relative to the first row")
  print(line)
  print("-" * len(line))
  for row in rows:
    print(
      "  ".join(
        str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))
      )
    )
  for name in names[1:]:
    if "device_peak_bytes_in_use" in results[name]:
      print(
        f"  device allocator peak_bytes_in_use, {name}: "
        f"{_mib(results[name]['device_peak_bytes_in_use'])} MiB"
      )
  for name in names:
    if "error" in results[name]:
      print(f"  {name}: {results[name]['error']}")
  print()
  print(
    "XLA peak = argument + output + temp - alias bytes of the compiled program (exact, "
    "deterministic).\nRSS peak-base = ru_maxrss after the first execution minus the baseline "
    "process's; it includes\ntracing/compiling and allocator slack. RSS exec growth = rise of "
    "ru_maxrss during the first\nexecution alone (0 if compiling had already reached a higher "
    "peak)."
  )
  print(f"total wall time {time.perf_counter() - t_start:.1f} s")

  label = f"{args.large_steps} steps / chunk {args.chunk_size} vs {args.small_steps} steps / all"
  if "error" in ref or "error" in test or "error" in base:
    print(f"FAIL: a required configuration did not run ({label})")
    return 1
  checks = []
  if args.gate in ("compiled", "both"):
    checks.append(("compiled peak", _ratio(test["compiled_peak"], ref_peak)))
  if args.gate in ("rss", "both"):
    checks.append(("RSS peak over baseline", _ratio(rss_over_base(test), ref_rss)))
  bad = [(n, r) for n, r in checks if r is None or r > args.threshold]
  if bad:
    print(
      "FAIL: "
      + "; ".join(f"{n} ratio {_fmt_ratio(r)} > {args.threshold}" for n, r in bad)
      + f" ({label})"
    )
    return 1
  print(
    "PASS: "
    + "; ".join(f"ratio {r:.3f} <= {args.threshold} ({n})" for n, r in checks)
    + f" ({label})"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
