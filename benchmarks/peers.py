"""jaxsal side by side with its peers, in one run: Captum, PAIR's saliency, per-class loops.

One command, one table (also written as JSON). Every row times jaxsal and a
peer on the same weights and the same inputs, and the ratio is
``jaxsal seconds / peer seconds`` (below 1: jaxsal is faster).

Parts (``--parts``, all by default):

* ``captum``: gradient, gradient x input, integrated gradients (``--ig-steps``,
  Gauss-Legendre in both), SmoothGrad (``--sg-samples``), guided backprop,
  Grad-CAM (last stage, bilinear upsampling) and occlusion (patch and stride
  ``size // 8``), against Captum on a PyTorch model holding the same
  weights: the small CNN's twin (``tests/attribution/_torch_twin.py``) and a
  torchvision-layout ResNet-18 (``benchmarks/_torch_resnet.py``) whose
  state dict jaxsal converts with ``jaxsal.models.pretrained``. IG and
  SmoothGrad run ``--chunk`` points per pass in both libraries (Captum's
  ``internal_batch_size`` / ``nt_samples_batch_size``), occlusion 16
  windows per pass (Captum's ``perturbations_per_eval``).
* ``pair``: IG and SmoothGrad against PAIR's ``saliency`` package, driven by
  the same JAX model: its ``call_model_function`` calls a jitted JAX
  gradient. PAIR explains one image at a time from a host loop; IG sends
  all of an image's points in one call (``batch_size = steps``), SmoothGrad
  one call per noisy sample, as the package does.
* ``classes``: every class's maps in one compiled call
  (``all_classes``, ``cgi``, ``var_from_maps`` over ``all_classes``)
  against a loop over classes, once with a jitted single-class jaxsal method
  (as the official CGI and VAR code loops) and once with Captum; CGI and
  VAR's loops end with the same jitted ``competition_from_maps`` /
  ``var_from_maps``.
* ``masker``: one CA (and FIX) masker training step against one classifier
  training step (``benchmarks/masker_step.py``).
* ``memory``: XLA's compiled peak memory of IG as the number of steps
  grows, with chunks of ``--chunk`` steps and without.

Timing: jaxsal's function is jitted and compiled ahead of time (the compile
time is reported, not counted). Each row first runs both libraries once;
if those first runs took less than ``--budget`` seconds (10) together, they were
the warm-up and ``--repeats`` interleaved runs of each follow, whose medians
are compared; otherwise (IG and SmoothGrad at 224x224 on a CPU) the first
runs are the measurement, after the same model's cheaper rows have warmed
both libraries up, and the ``runs`` column says 1. ``check`` is
``max|jaxsal - peer| / max|peer|`` for the rows that compute the same
numbers (none for noise-based methods, whose noise differs).

Usage::

  python benchmarks/peers.py --json benchmarks/results/peers_cpu.json
  python benchmarks/peers.py --parts captum --setups resnet18:224:16
  python benchmarks/peers.py --help
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # benchmark this checkout

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal import attribution as A
from jaxsal import models
from jaxsal.models import pretrained

MiB = 1024 * 1024
PARTS = ("captum", "pair", "classes", "masker", "memory")
METHODS = (
  "gradient",
  "gradient_x_input",
  "integrated_gradients",
  "smoothgrad",
  "guided_backprop",
  "gradcam",
  "occlusion",
)


def _load(path: str, name: str):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _block(tree):
  """Waits for JAX arrays in ``tree``; other values (numpy, torch) are returned as they are."""
  if isinstance(tree, jax.Array) or (
    isinstance(tree, (list, tuple, dict))
    and any(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(tree))
  ):
    return jax.block_until_ready(tree)
  return tree


# --------------------------------------------------------------------------- models


class Setup:
  """A model in both libraries with the same weights, and a batch of inputs and targets."""

  def __init__(self, spec: str, seed: int = 0):
    import torch

    name, size, batch = spec.split(":")
    self.name, self.size, self.batch = name, int(size), int(batch)
    rng = np.random.default_rng(seed)
    if name == "small_cnn":
      twin = _load("tests/attribution/_torch_twin.py", "_torch_twin")
      self.channels, self.num_classes = 1, 10
      model = models.SmallCNN(num_classes=10)
      shapes = jax.eval_shape(
        lambda: models.init_model(model, jax.random.key(0), (1, self.size, self.size, 1))
      )

      # As class_maps.random_variables, but with random biases: with zero biases
      # Grad-CAM on the 16x16 smoke size is all zeros, and its check would be vacuous.
      def draw(path, s):
        if path[-1].key == "kernel":
          fan_in = int(np.prod(s.shape[:-1]))
          return rng.standard_normal(s.shape).astype(np.float32) * np.sqrt(2.0 / fan_in)
        return (0.1 * rng.standard_normal(s.shape)).astype(np.float32)

      variables = jax.tree_util.tree_map_with_path(draw, shapes)
      self.net = twin.SmallCNNTwin(variables, strides=tuple(model.strides))
      self.torch_layer = self.net.relu4
      x = rng.uniform(0, 1, (self.batch, self.size, self.size, 1)).astype(np.float32)
    elif name in pretrained.ARCHITECTURES:
      tr = _load("benchmarks/_torch_resnet.py", "_torch_resnet")
      self.channels, self.num_classes = 3, 1000
      self.net = tr.build(name, num_classes=1000, seed=seed)
      variables = pretrained.resnet_variables_from_torchvision(self.net.state_dict(), name)
      model = pretrained.ARCHITECTURES[name](num_classes=1000)
      self.torch_layer = self.net.layer4
      x = pretrained.imagenet_normalize(
        rng.uniform(0, 1, (self.batch, self.size, self.size, 3)).astype(np.float32)
      )
    else:
      raise ValueError(
        f"unknown model {name!r} in setup {spec!r}; known: small_cnn, "
        f"{', '.join(sorted(pretrained.ARCHITECTURES))}"
      )
    self.apply_fn, self.params = models.from_linen(model, jax.tree.map(jnp.asarray, variables))
    self.x = np.asarray(x, np.float32)
    self.t = rng.integers(0, self.num_classes, self.batch).astype(np.int32)
    self.xj, self.tj = jnp.asarray(self.x), jnp.asarray(self.t)
    self.xt = torch.from_numpy(np.ascontiguousarray(self.x.transpose(0, 3, 1, 2)))
    self.tt = torch.from_numpy(self.t.astype(np.int64))
    self.label = (
      f"{'small CNN' if name == 'small_cnn' else name} "
      f"{self.size}x{self.size}x{self.channels} b{self.batch}"
    )


def _nhwc(t) -> np.ndarray:
  return t.detach().numpy().transpose(0, 2, 3, 1)


# --------------------------------------------------------------------------- timing


def measure(fns: list[Callable[[], Any]], repeats: int, budget: float):
  """Times zero-argument functions: each once, then (if cheap) ``repeats`` interleaved rounds.

  Returns ``(seconds per function, runs, first outputs)``: the medians of the
  interleaved rounds when the first runs took less than ``budget`` seconds
  together (they were the warm-up), else the first runs themselves.
  """
  firsts, outs = [], []
  for fn in fns:
    t0 = time.perf_counter()
    outs.append(_block(fn()))
    firsts.append(time.perf_counter() - t0)
  if sum(firsts) >= budget:
    return firsts, 1, outs
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, ts in zip(fns, times):
      t0 = time.perf_counter()
      _block(fn())
      ts.append(time.perf_counter() - t0)
  return [statistics.median(ts) for ts in times], repeats, outs


def compiled(fn: Callable, *args):
  """``jax.jit(fn)`` compiled ahead of time for ``args``; returns (call, compile seconds)."""
  t0 = time.perf_counter()
  exe = jax.jit(fn).lower(*args).compile()
  return (lambda: exe(*args)), time.perf_counter() - t0


def _check(ours, theirs) -> float:
  """``max|ours - theirs| / max|theirs|``; NaN when ``theirs`` is all zeros (nothing compared)."""
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  scale = np.abs(theirs).max()
  return float(np.abs(ours - theirs).max() / scale) if scale > 0 else float("nan")


def _row(
  rows, part, setup_label, method, peer, t_ours, t_peer, runs, compile_s, check=None, note=""
):
  row = {
    "part": part,
    "setup": setup_label,
    "method": method,
    "peer": peer,
    "jaxsal_s": t_ours,
    "peer_s": t_peer,
    "ratio": t_ours / t_peer,
    "runs": runs,
    "compile_s": compile_s,
    "check": check,
    "note": note,
  }
  rows.append(row)
  print(_format_row(row), flush=True)
  return row


# --------------------------------------------------------------------------- parts


def captum_rows(setup: Setup, args, rows: list) -> None:
  from captum.attr import (
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
  )

  s, net = setup, setup.net
  patch = max(setup.size // 8, 1)
  chunk = args.chunk
  flat = s.x.reshape(s.batch, -1)
  stdev = float(0.15 * (flat.max() - flat.min()))
  key = jax.random.key(0)
  cases = {
    "gradient": (
      lambda p, x, t: A.gradient(s.apply_fn, p, x, t),
      lambda: Saliency(net).attribute(s.xt, target=s.tt, abs=False),
      True,
    ),
    "gradient_x_input": (
      lambda p, x, t: A.gradient_x_input(s.apply_fn, p, x, t),
      lambda: InputXGradient(net).attribute(s.xt, target=s.tt),
      True,
    ),
    "integrated_gradients": (
      lambda p, x, t: A.integrated_gradients(
        s.apply_fn, p, x, t, steps=args.ig_steps, rule="gausslegendre", chunk_size=chunk
      ),
      lambda: IntegratedGradients(net).attribute(
        s.xt,
        target=s.tt,
        n_steps=args.ig_steps,
        method="gausslegendre",
        internal_batch_size=chunk * s.batch,
      ),
      True,
    ),
    "smoothgrad": (
      lambda p, x, t: A.smoothgrad(
        A.gradient, samples=args.sg_samples, sigma=0.15, chunk_size=chunk
      )(s.apply_fn, p, x, t, key=key),
      lambda: NoiseTunnel(Saliency(net)).attribute(
        s.xt,
        target=s.tt,
        nt_type="smoothgrad",
        nt_samples=args.sg_samples,
        nt_samples_batch_size=chunk,
        stdevs=stdev,
        abs=False,
      ),
      False,
    ),
    "guided_backprop": (
      lambda p, x, t: A.guided_backprop(s.apply_fn, p, x, t),
      lambda: GuidedBackprop(net).attribute(s.xt, target=s.tt),
      True,
    ),
    "gradcam": (
      lambda p, x, t: A.gradcam(s.apply_fn, p, x, t, layer="l4")[..., :1],
      lambda: LayerAttribution.interpolate(
        LayerGradCam(net, s.torch_layer).attribute(s.xt, target=s.tt, relu_attributions=True),
        (s.size, s.size),
        interpolate_mode="bilinear",
      ),
      True,
    ),
    "occlusion": (
      lambda p, x, t: A.occlusion(s.apply_fn, p, x, t, patch=patch, stride=patch, chunk_size=16),
      lambda: Occlusion(net).attribute(
        s.xt,
        target=s.tt,
        sliding_window_shapes=(s.channels, patch, patch),
        strides=(s.channels, patch, patch),
        perturbations_per_eval=16,
      ),
      True,
    ),
  }
  labels = {
    "integrated_gradients": f"integrated_gradients ({args.ig_steps} steps)",
    "smoothgrad": f"smoothgrad ({args.sg_samples} samples)",
    "occlusion": f"occlusion (patch {patch}, stride {patch})",
    "gradcam": "gradcam (last stage)",
  }
  for name in args.methods:
    ours_fn, peer, same = cases[name]
    call, compile_s = compiled(ours_fn, s.params, s.xj, s.tj)
    (t_ours, t_peer), runs, (out_ours, out_peer) = measure([call, peer], args.repeats, args.budget)
    check = _check(out_ours, _nhwc(out_peer)) if same else None
    _row(
      rows,
      "captum",
      s.label,
      labels.get(name, name),
      "captum",
      t_ours,
      t_peer,
      runs,
      compile_s,
      check,
    )


def pair_rows(setup: Setup, args, rows: list) -> None:
  import saliency.core as saliency

  s = setup
  grad = jax.jit(lambda p, x, t: A.gradient(s.apply_fn, p, x, t))

  def call_model(x_batch, call_model_args=None, expected_keys=None):
    t = jnp.full((x_batch.shape[0],), call_model_args["target"], jnp.int32)
    g = grad(s.params, jnp.asarray(x_batch, jnp.float32), t)
    return {saliency.INPUT_OUTPUT_GRADIENTS: np.asarray(g)}

  def pair_ig():
    ig = saliency.IntegratedGradients()
    return np.stack(
      [
        ig.GetMask(
          s.x[i],
          call_model,
          {"target": int(s.t[i])},
          x_baseline=np.zeros_like(s.x[i]),
          x_steps=args.ig_steps,
          batch_size=args.ig_steps,
        )
        for i in range(s.batch)
      ]
    )

  def pair_sg():
    g = saliency.GradientSaliency()
    return np.stack(
      [
        g.GetSmoothedMask(
          s.x[i],
          call_model,
          {"target": int(s.t[i])},
          stdev_spread=0.15,
          nsamples=args.sg_samples,
          magnitude=False,
        )
        for i in range(s.batch)
      ]
    )

  key = jax.random.key(0)
  cases = [
    (
      f"integrated_gradients ({args.ig_steps} steps)",
      lambda p, x, t: A.integrated_gradients(
        s.apply_fn, p, x, t, steps=args.ig_steps, rule="riemann_trapezoid", chunk_size=args.chunk
      ),
      pair_ig,
      "PAIR: linspace points, weights 1/n; jaxsal: the same points, trapezoid weights",
    ),
    (
      f"smoothgrad ({args.sg_samples} samples)",
      lambda p, x, t: A.smoothgrad(
        A.gradient, samples=args.sg_samples, sigma=0.15, chunk_size=args.chunk
      )(s.apply_fn, p, x, t, key=key),
      pair_sg,
      "PAIR: one model call per image and sample",
    ),
  ]
  for label, ours_fn, peer, note in cases:
    call, compile_s = compiled(ours_fn, s.params, s.xj, s.tj)
    (t_ours, t_peer), runs, _ = measure([call, peer], args.repeats, args.budget)
    _row(rows, "pair", s.label, label, "PAIR saliency", t_ours, t_peer, runs, compile_s, note=note)


def class_rows(setup: Setup, args, rows: list) -> None:
  from captum.attr import InputXGradient, Saliency

  s, net = setup, setup.net
  k = s.num_classes
  chunk = min(k, args.class_chunk)
  targets = [jnp.full((s.batch,), c, jnp.int32) for c in range(k)]
  torch_targets = [s.tt.new_full((s.batch,), c) for c in range(k)]
  grad1 = jax.jit(lambda p, x, t: A.gradient(s.apply_fn, p, x, t))
  gxi1 = jax.jit(lambda p, x, t: A.gradient_x_input(s.apply_fn, p, x, t))
  comp = jax.jit(A.competition_from_maps)
  # tau = 0: on a random model the maps are small, the softmax over classes is
  # near uniform, and the paper's tau = 0.1 would zero every map (a vacuous check).
  var_maps = lambda maps: A.var_from_maps(maps, tau=0.0)
  varf = jax.jit(var_maps)
  cases = [
    (
      f"gradient, all {k} classes",
      lambda p, x, t: A.all_classes(A.gradient, chunk_size=chunk)(s.apply_fn, p, x),
      lambda: jnp.stack([grad1(s.params, s.xj, t) for t in targets]),
      lambda: np.stack(
        [_nhwc(Saliency(net).attribute(s.xt, target=t, abs=False)) for t in torch_targets]
      ),
    ),
  ]
  if k <= args.max_cgi_classes:
    cases += [
      (
        f"CGI, all {k} classes' competitive maps",
        lambda p, x, t: A.competition_from_maps(
          A.all_classes(A.gradient_x_input, chunk_size=chunk)(s.apply_fn, p, x)
        ),
        lambda: comp(jnp.stack([gxi1(s.params, s.xj, t) for t in targets])),
        lambda: np.asarray(
          comp(
            jnp.asarray(
              np.stack(
                [_nhwc(InputXGradient(net).attribute(s.xt, target=t)) for t in torch_targets]
              )
            )
          )
        ),
      ),
      (
        f"VAR(gradient x input, tau 0), all {k} classes",
        lambda p, x, t: var_maps(
          A.all_classes(A.gradient_x_input, chunk_size=chunk)(s.apply_fn, p, x)
        ),
        lambda: varf(jnp.stack([gxi1(s.params, s.xj, t) for t in targets])),
        lambda: np.asarray(
          varf(
            jnp.asarray(
              np.stack(
                [_nhwc(InputXGradient(net).attribute(s.xt, target=t)) for t in torch_targets]
              )
            )
          )
        ),
      ),
    ]
  for label, ours_fn, jax_loop, captum_loop in cases:
    call, compile_s = compiled(ours_fn, s.params, s.xj, s.tj)
    (t_ours, t_loop, t_cap), runs, (out_ours, out_loop, out_cap) = measure(
      [call, jax_loop, captum_loop], args.repeats, args.budget
    )
    _row(
      rows,
      "classes",
      s.label,
      label,
      "jitted jaxsal loop over classes",
      t_ours,
      t_loop,
      runs,
      compile_s,
      _check(out_ours, out_loop),
    )
    _row(
      rows,
      "classes",
      s.label,
      label,
      "captum loop over classes",
      t_ours,
      t_cap,
      runs,
      compile_s,
      _check(out_ours, out_cap),
    )


def masker_rows(args, rows: list) -> None:
  ms = _load("benchmarks/masker_step.py", "masker_step")
  ns = argparse.Namespace(
    models=args.masker_models,
    resnet_size=args.masker_resnet_size,
    resnet_batch=args.masker_resnet_batch,
    small_size=args.masker_small_size,
    small_batch=args.masker_small_batch,
    repeats=args.repeats,
  )
  for r in ms.bench(ns):
    label = f"{'small CNN' if r['model'] == 'small_cnn' else r['model']} {r['input']} b{r['batch']}"
    row = {
      "part": "masker",
      "setup": label,
      "method": r["step"],
      "peer": "classifier step",
      "jaxsal_s": r["seconds"],
      "peer_s": r["seconds"] / r["ratio_to_classifier_step"],
      "ratio": r["ratio_to_classifier_step"],
      "runs": r["repeats"],
      "compile_s": None,
      "check": None,
      "note": f"{r['images_per_sec']:.1f} images/s",
    }
    rows.append(row)
    print(_format_row(row), flush=True)


def memory_rows(args, rows: list) -> list[dict]:
  s = args.memory_setup.split(":")
  size, batch = int(s[1]), int(s[2])
  model = models.SmallCNN(num_classes=10)
  shapes = jax.eval_shape(lambda: models.init_model(model, jax.random.key(0), (1, size, size, 1)))
  apply_fn, params = models.from_linen(
    model, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
  )
  x = jax.ShapeDtypeStruct((batch, size, size, 1), jnp.float32)
  t = jax.ShapeDtypeStruct((batch,), jnp.int32)
  class_maps = _load("benchmarks/class_maps.py", "class_maps")
  out = []
  for steps in args.memory_steps:
    peaks = {}
    for chunk in (min(args.chunk, steps), None):
      fn = lambda p, x_, t_, c=chunk: A.integrated_gradients(
        apply_fn, p, x_, t_, steps=steps, chunk_size=c
      )
      peak = class_maps._peak(jax.jit(fn).lower(params, x, t).compile())["peak"]
      peaks[chunk] = peak
    row = {
      "part": "memory",
      "setup": f"small CNN {size}x{size}x1 b{batch}",
      "method": f"integrated_gradients ({steps} steps)",
      "peer": "all steps at once",
      "jaxsal_mib": peaks[min(args.chunk, steps)] / MiB,
      "peer_mib": peaks[None] / MiB,
      "ratio": peaks[min(args.chunk, steps)] / peaks[None],
      "note": f"chunks of {min(args.chunk, steps)} steps; XLA compiled peak",
    }
    rows.append(row)
    out.append(row)
    print(_format_row(row), flush=True)
  return out


# --------------------------------------------------------------------------- output


HEADER = (
  f"{'part':8} {'setup':24} {'method':44} {'peer':32} {'jaxsal':>10} {'peer':>10} "
  f"{'ratio':>7} {'runs':>4} {'compile':>8} {'check':>8}"
)


def _format_row(r: dict) -> str:
  if r["part"] == "memory":
    return (
      f"{r['part']:8} {r['setup']:24} {r['method']:44} {r['peer']:32} "
      f"{r['jaxsal_mib']:7.1f}MiB {r['peer_mib']:7.1f}MiB {r['ratio']:7.3f}"
    )
  comp = "-" if r.get("compile_s") is None else f"{r['compile_s']:7.1f}s"
  check = "-" if r.get("check") is None else f"{r['check']:8.1e}"
  return (
    f"{r['part']:8} {r['setup']:24} {r['method']:44} {r['peer']:32} "
    f"{r['jaxsal_s']:9.4f}s {r['peer_s']:9.4f}s {r['ratio']:7.3f} {r['runs']:>4} "
    f"{comp:>8} {check:>8}"
  )


def markdown(result: dict[str, Any]) -> str:
  """The rows of a result (as written by ``--json``) as a Markdown table."""
  lines = [
    "| part | setup | method | peer | jaxsal | peer | ratio | runs | check |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in result["rows"]:
    if r["part"] == "memory":
      lines.append(
        f"| memory | {r['setup']} | {r['method']} | {r['peer']} | "
        f"{r['jaxsal_mib']:.1f} MiB | {r['peer_mib']:.1f} MiB | {r['ratio']:.3f} | - | - |"
      )
      continue
    check = "-" if r["check"] is None else f"{r['check']:.1e}"
    extra = f" ({r['note']})" if r["part"] == "masker" else ""
    lines.append(
      f"| {r['part']} | {r['setup']} | {r['method']}{extra} | {r['peer']} | "
      f"{r['jaxsal_s']:.4f} s | {r['peer_s']:.4f} s | **{r['ratio']:.2f}** | "
      f"{r['runs']} | {check} |"
    )
  return "\n".join(lines)


def machine() -> dict[str, Any]:
  import torch

  out = {
    "platform": platform.platform(),
    "processor": platform.processor() or platform.machine(),
    "cpu_count": os.cpu_count(),
    "jax": jax.__version__,
    "backend": jax.default_backend(),
    "device": str(jax.devices()[0].device_kind),
    "torch": torch.__version__,
    "torch_threads": torch.get_num_threads(),
  }
  for pkg in ("captum", "saliency"):
    try:
      from importlib.metadata import version

      out[pkg] = version(pkg)
    except Exception:
      out[pkg] = None
  return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
  p.add_argument(
    "--setups",
    nargs="+",
    default=["small_cnn:64:16", "resnet18:64:16", "resnet18:224:16"],
    help="model:size:batch for the Captum rows",
  )
  p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
  p.add_argument("--pair-setups", nargs="+", default=["small_cnn:64:16", "resnet18:64:16"])
  p.add_argument(
    "--class-setups",
    nargs="+",
    default=["small_cnn:64:16", "resnet18:64:2"],
    help="model:size:batch; every class of the model",
  )
  p.add_argument(
    "--class-chunk",
    type=int,
    default=100,
    help="classes per pass of the all-class call (default 100)",
  )
  p.add_argument(
    "--max-cgi-classes",
    type=int,
    default=10,
    help="CGI and VAR rows only for models with at most this many classes",
  )
  p.add_argument("--masker-models", nargs="+", default=["small_cnn", "resnet50"])
  p.add_argument("--masker-small-size", type=int, default=64)
  p.add_argument("--masker-small-batch", type=int, default=64)
  p.add_argument("--masker-resnet-size", type=int, default=64)
  p.add_argument("--masker-resnet-batch", type=int, default=16)
  p.add_argument("--memory-setup", default="small_cnn:64:32")
  p.add_argument("--memory-steps", type=int, nargs="+", default=[16, 64, 256, 1024])
  p.add_argument("--ig-steps", type=int, default=50)
  p.add_argument("--sg-samples", type=int, default=25)
  p.add_argument(
    "--chunk",
    type=int,
    default=10,
    help="IG points / SmoothGrad samples per pass, in every library (default 10)",
  )
  p.add_argument("--repeats", type=int, default=3, help="timed runs per row after the warm-up")
  p.add_argument(
    "--budget",
    type=float,
    default=10.0,
    help="seconds: when a row's first runs take longer, they are its measurement",
  )
  p.add_argument("--json", default=None, help="also write the results here")
  p.add_argument(
    "--markdown",
    default=None,
    metavar="JSON",
    help="only print the table of an earlier --json result as Markdown",
  )
  args = p.parse_args(argv)
  if args.markdown:
    with open(args.markdown) as f:
      result = json.load(f)
    print(markdown(result))
    return result
  for name in ("ig_steps", "sg_samples", "chunk", "repeats", "class_chunk"):
    if getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")

  import torch

  warnings.filterwarnings("ignore", category=UserWarning, module="captum")
  warnings.filterwarnings("ignore", message=".*backward hook.*")
  torch.set_grad_enabled(True)
  start = time.perf_counter()
  info = machine()
  print(
    f"{info['processor']}, {info['cpu_count']} cores, jax {info['jax']} on {info['backend']} "
    f"({info['device']}), torch {info['torch']} ({info['torch_threads']} threads), "
    f"captum {info['captum']}, saliency {info['saliency']}",
    flush=True,
  )
  print(HEADER, flush=True)
  rows: list[dict] = []
  part_s = {}
  runners = {
    "captum": lambda: [captum_rows(Setup(spec), args, rows) for spec in args.setups],
    "pair": lambda: [pair_rows(Setup(spec), args, rows) for spec in args.pair_setups],
    "classes": lambda: [class_rows(Setup(spec), args, rows) for spec in args.class_setups],
    "masker": lambda: masker_rows(args, rows),
    "memory": lambda: memory_rows(args, rows),
  }
  for part in PARTS:
    if part in args.parts:
      t0 = time.perf_counter()
      runners[part]()
      part_s[part] = time.perf_counter() - t0
  total = time.perf_counter() - start
  print(
    f"\nratio = jaxsal / peer (below 1: jaxsal is faster; memory: chunked / all at once); "
    f"check = max|jaxsal - peer| / max|peer|; total {total:.0f} s ("
    + ", ".join(f"{k} {v:.0f} s" for k, v in part_s.items())
    + ")",
    flush=True,
  )
  result = {"machine": info, "args": vars(args), "rows": rows, "total_s": total, "part_s": part_s}
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
      json.dump(result, f, indent=2)
    os.replace(tmp, args.json)
  return result


if __name__ == "__main__":
  main()
