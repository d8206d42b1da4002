"""Every attribution method on ResNet-50, batched and jitted: compile and run times.

Not a comparison with a peer (see the other benchmarks for ratios): this
script shows that each method runs on a real model, under ``jax.jit``, on a
batch, and that the batched maps equal the per-example ones. Weights are
random (no downloads here), which does not change the cost.

  python benchmarks/resnet50_methods.py [--size 64] [--batch 2]

It prints one row per method: compile seconds, run seconds (second call,
same shapes), and max |batched - per-example| relative to max |batched|.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal import attribution as A
from jaxsal import models


def methods(key, batch):
  return {
    "gradient": (A.gradient, {}),
    "gradient_x_input": (A.gradient_x_input, {}),
    "integrated_gradients (16 steps, chunks of 8)": (
      A.integrated_gradients,
      {"steps": 16, "chunk_size": 8},
    ),
    # One key per image, so that an image's noise does not depend on its batch.
    "smoothgrad (8 samples, chunks of 4)": (
      A.smoothgrad(A.gradient, samples=8, chunk_size=4),
      {"key": jax.random.split(key, batch)},
    ),
    "guided_backprop": (A.guided_backprop, {}),
    "deconvnet": (A.deconvnet, {}),
    "gradcam (l4)": (A.gradcam, {"layer": "l4"}),
    "guided_gradcam (l4)": (A.guided_gradcam, {"layer": "l4"}),
    "occlusion (patch 16, stride 16)": (A.occlusion, {"patch": 16, "stride": 16}),
    "rise (64 masks, chunks of 16)": (A.rise, {"key": key, "num_masks": 64, "chunk_size": 16}),
    "meaningful_perturbation (10 steps)": (
      A.meaningful_perturbation,
      {"steps": 10, "mask_size": 14},
    ),
    # Class-relevant maps: CGI competes against all 1000 classes, 100 at a time.
    "cgi (1000 classes, chunks of 100)": (A.competition(A.gradient_x_input, chunk_size=100), {}),
    "var(integrated_gradients, 16 steps), contrastive": (
      A.var(A.integrated_gradients),
      {"steps": 16},
    ),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--classes", type=int, default=1000)
  parser.add_argument("--only", default="", help="run the methods whose name contains this")
  args = parser.parse_args()
  model = models.ResNet50(num_classes=args.classes)
  variables = jax.jit(lambda k: models.init_model(model, k, (1, args.size, args.size, 3)))(
    jax.random.key(0)
  )
  apply_fn, params = models.from_linen(model, variables)
  x = jax.random.uniform(jax.random.key(1), (args.batch, args.size, args.size, 3))
  t = jnp.arange(args.batch, dtype=jnp.int32) * 7 % args.classes
  print(
    f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0].device_kind}; "
    f"ResNet-50, {args.classes} classes, x {tuple(x.shape)}"
  )
  print(f"{'method':48s} {'compile s':>9s} {'run s':>8s} {'batched vs single':>18s}")
  for name, (method, kw) in methods(jax.random.key(2), args.batch).items():
    if args.only not in name:
      continue
    per_image_key = "key" in kw and jnp.ndim(kw["key"]) == 1
    f = jax.jit(
      lambda p, v, tt, k, method=method, kw=kw: method(
        apply_fn, p, v, tt, **({**kw, "key": k} if per_image_key else kw)
      )
    )
    keys = kw["key"] if per_image_key else jnp.zeros((args.batch,))
    t0 = time.perf_counter()
    out = jax.block_until_ready(f(params, x, t, keys))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(f(params, x, t, keys))
    run_s = time.perf_counter() - t0
    single = np.concatenate(
      [
        np.asarray(f(params, x[i : i + 1], t[i : i + 1], keys[i : i + 1]))
        for i in range(args.batch)
      ]
    )
    out = np.asarray(out)
    assert out.shape == x.shape and np.isfinite(out).all(), name
    rel = np.abs(out - single).max() / max(np.abs(out).max(), 1e-30)
    print(f"{name:48s} {compile_s:9.2f} {run_s:8.2f} {rel:18.1e}")


if __name__ == "__main__":
  main()
