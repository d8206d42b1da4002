#!/usr/bin/env python3
"""Launch masker training on a Cloud TPU pod slice or on one multi-GPU node.

Every host of a pod slice runs the same ``jaxsal`` command; jaxsal calls
``jax.distributed.initialize()`` itself when the environment describes
several hosts (``distributed=auto``), each host reads its own slice of every
global batch, and checkpoints go to ``--workdir``, which must be storage
every host can reach (a ``gs://`` bucket). On one GPU node a single process
drives all of the node's GPUs.

``--dry-run`` prints the commands instead of running them. Nothing here
needs jaxsal or JAX on the machine that launches.

    python launch/launch.py tpu --name sal --zone us-central2-b --accelerator v4-32 \\
        --bucket gs://my-bucket/jaxsal --mode ca --dry-run
    python launch/launch.py gpu --workdir /data/runs/masker_ca --mode ca --dry-run
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys

# Chips per host, and TensorCores per chip in the accelerator type's number.
_TPU_FAMILIES = {
  "v2": (4, 2),
  "v3": (4, 2),
  "v4": (4, 2),
  "v5p": (4, 2),
  "v5litepod": (4, 1),
  "v6e": (4, 1),
}
# What pip installs on each host: a wheel in the bucket, a git URL of your checkout, ...
DEFAULT_PACKAGE = "jaxsal"


def tpu_hosts(accelerator: str) -> int:
  """Hosts of a TPU slice type, e.g. ``v4-32`` -> 4 (16 chips, 4 per host).

  Raises:
    ValueError: an accelerator type this script does not know.
  """
  m = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)", accelerator)
  if not m:
    raise ValueError(
      f"--accelerator must look like v4-32, v5p-64 or v5litepod-16 "
      f"(families {', '.join(_TPU_FAMILIES)}); got {accelerator!r}"
    )
  chips_per_host, cores_per_chip = _TPU_FAMILIES[m.group(1)]
  chips = int(m.group(2)) // cores_per_chip
  if chips < 1:
    raise ValueError(f"--accelerator {accelerator!r} has no whole chip")
  return max(1, chips // chips_per_host)


def train_command(args) -> list[str]:
  """The ``jaxsal`` command every host runs: the ResNet-50 classifier, or a masker on it."""
  if args.stage == "classifier":
    cmd = [
      "jaxsal",
      "train",
      "--config",
      "resnet50_imagenet",
      "--workdir",
      args.classifier_workdir,
      "--no-progress",
    ]
    if args.data_dir:
      cmd += ["--set", f"dataset.data_dir={args.data_dir}"]
    return cmd + [x for s in args.set or [] for x in ("--set", s)]
  config = f"masker_resnet50_imagenet:{args.mode}"
  cmd = [
    "jaxsal",
    "train-masker",
    "--config",
    config,
    "--workdir",
    args.workdir,
    "--set",
    f"classifier_workdir={args.classifier_workdir}",
    "--no-progress",
  ]
  if args.data_dir:
    cmd += ["--set", f"classifier.dataset.data_dir={args.data_dir}"]
  for s in args.set or []:
    cmd += ["--set", s]
  return cmd


def tpu_commands(args) -> list[list[str]]:
  hosts = tpu_hosts(args.accelerator)
  base = ["gcloud", "compute", "tpus", "tpu-vm"]
  where = [f"--zone={args.zone}"] + ([f"--project={args.project}"] if args.project else [])
  install = (
    f'pip install -U "jax[tpu]" "{args.package}" && '
    'python3 -c "import jax; print(jax.process_count(), jax.device_count())"'
  )
  run = shlex.join(train_command(args))
  print(
    f"# {args.accelerator}: {hosts} hosts; every one runs the same command (--worker=all)",
    flush=True,
  )
  cmds = []
  if not args.no_create:
    cmds.append(
      base
      + ["create", args.name]
      + where
      + [f"--accelerator-type={args.accelerator}", f"--version={args.runtime}"]
    )
  cmds.append(base + ["ssh", args.name] + where + ["--worker=all", f"--command={install}"])
  cmds.append(base + ["ssh", args.name] + where + ["--worker=all", f"--command={run}"])
  return cmds


def gpu_commands(args) -> list[list[str]]:
  env = ["env", "XLA_PYTHON_CLIENT_MEM_FRACTION=0.9"]
  if args.gpus:
    env.append("CUDA_VISIBLE_DEVICES=" + ",".join(str(i) for i in range(args.gpus)))
  print(
    f"# one node, one process driving {'all its' if not args.gpus else args.gpus} GPUs "
    f"(jax.devices()); distributed=auto does not initialise on one host",
    flush=True,
  )
  cmds = []
  if not args.no_install:
    cmds.append(["pip", "install", "-U", "jax[cuda12]", args.package])
  cmds.append(env + train_command(args))
  return cmds


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = p.add_subparsers(dest="where", required=True)
  for name in ("tpu", "gpu"):
    q = sub.add_parser(name)
    q.add_argument(
      "--stage",
      choices=("masker", "classifier"),
      default="masker",
      help="train the masker (default; needs the classifier), or the classifier",
    )
    q.add_argument("--mode", choices=("ca", "fix"), default="ca", help="CA or FIX masker")
    q.add_argument("--package", default=DEFAULT_PACKAGE, help="what pip installs on each host")
    q.add_argument("--data-dir", default=None, help="where tfds prepared imagenet2012 lives")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="more config overrides")
    q.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    if name == "tpu":
      q.add_argument("--name", required=True, help="the TPU VM's name")
      q.add_argument("--zone", required=True)
      q.add_argument("--project", default=None)
      q.add_argument("--accelerator", default="v4-32", help="slice type (v4-32: 4 hosts)")
      q.add_argument("--runtime", default="tpu-ubuntu2204-base", help="TPU VM software version")
      q.add_argument("--bucket", required=True, help="gs:// prefix for workdirs and data")
      q.add_argument("--no-create", action="store_true", help="the TPU VM exists already")
    else:
      q.add_argument("--workdir", required=True)
      q.add_argument("--classifier-workdir", default=None)
      q.add_argument("--gpus", type=int, default=0, help="use the first N GPUs (default all)")
      q.add_argument("--no-install", action="store_true")
  args = p.parse_args(argv)
  try:
    if args.where == "tpu":
      if not args.bucket.startswith("gs://"):
        raise ValueError(f"--bucket must be a gs:// path every host can reach; got {args.bucket!r}")
      bucket = args.bucket.rstrip("/")
      args.workdir = f"{bucket}/masker_resnet50_{args.mode}"
      args.classifier_workdir = f"{bucket}/resnet50_imagenet"
      args.data_dir = args.data_dir or f"{bucket}/tensorflow_datasets"
      cmds = tpu_commands(args)
    else:
      if args.gpus < 0:
        raise ValueError(f"--gpus must be >= 0; got {args.gpus}")
      args.classifier_workdir = args.classifier_workdir or f"{args.workdir}/classifier"
      cmds = gpu_commands(args)
  except ValueError as e:
    print(f"launch: error: {e}", file=sys.stderr)
    return 2
  for cmd in cmds:
    print(shlex.join(cmd), flush=True)
    if not args.dry_run:
      rc = subprocess.call(cmd)
      if rc:
        print(f"launch: {cmd[0]} exited with {rc}; stopping", file=sys.stderr)
        return rc
  return 0


if __name__ == "__main__":
  sys.exit(main())
