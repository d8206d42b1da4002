#!/usr/bin/env python3
"""Launch jaxsal on a Cloud TPU pod slice, on one multi-GPU node, or as a local multi-process job.

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

``local`` rehearses a pod job on one machine: N processes of any ``jaxsal``
command, each with D CPU devices, joined by a coordinator on localhost, each
line of output prefixed with its process id:

    python launch/launch.py local --processes 2 --devices-per-process 4 -- \\
        jaxsal train --config small_cnn_digits:test --workdir runs/rehearsal
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

# Chips per host, and TensorCores per chip in the accelerator type's number.
_TPU_FAMILIES = {
  "v2": (4, 2),
  "v3": (4, 2),
  "v4": (4, 2),
  "v5p": (4, 2),
  "v5litepod": (4, 1),
  "v6e": (4, 1),
}
_GLOO_CHATTER = re.compile(rb"is connected to \d+ peer ranks|^\s*$")
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


def job_env(args) -> list[str]:
  """``NAME=VALUE`` settings of the multi-process job that every host's command gets.

  The same ``JAXSAL_*`` variables the local launcher sets: the heartbeat
  timeout in every mode; on GPU nodes, the coordinator, the number of nodes
  and this node's rank (a TPU slice describes itself).
  """
  out = []
  if getattr(args, "nodes", 1) > 1:
    out += [
      f"JAXSAL_COORDINATOR_ADDRESS={args.coordinator}",
      f"JAXSAL_NUM_PROCESSES={args.nodes}",
      f"JAXSAL_PROCESS_ID={args.node_rank}",
    ]
  if args.heartbeat_timeout is not None:
    out.append(f"JAXSAL_HEARTBEAT_TIMEOUT={args.heartbeat_timeout}")
  return out


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
  settings = job_env(args)
  run = shlex.join((["env", *settings] if settings else []) + train_command(args))
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
  env = ["env", "XLA_PYTHON_CLIENT_MEM_FRACTION=0.9", *job_env(args)]
  if args.gpus:
    env.append("CUDA_VISIBLE_DEVICES=" + ",".join(str(i) for i in range(args.gpus)))
  gpus = "all its" if not args.gpus else args.gpus
  if args.nodes > 1:
    print(
      f"# node {args.node_rank} of {args.nodes}: one process driving {gpus} GPUs; run this on "
      f"every node with its --node-rank (node 0 hosts the coordinator {args.coordinator})",
      flush=True,
    )
  else:
    print(
      f"# one node, one process driving {gpus} GPUs (jax.devices()); "
      "distributed=auto does not initialise on one host",
      flush=True,
    )
  cmds = []
  if not args.no_install:
    cmds.append(["pip", "install", "-U", "jax[cuda12]", args.package])
  cmds.append(env + train_command(args))
  return cmds


def free_port() -> int:
  """A TCP port on localhost that nothing listens on now."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def port_free(port: int) -> bool:
  with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(("", port))
    except OSError:
      return False
  return True


def process_env(
  process_id: int,
  processes: int,
  devices: int,
  port: int,
  *,
  heartbeat_timeout: int | None = None,
  base: dict | None = None,
) -> dict:
  """The environment of local process ``process_id``: the job's settings for jaxsal and JAX."""
  env = dict(os.environ if base is None else base)
  env.update(
    JAXSAL_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
    JAXSAL_NUM_PROCESSES=str(processes),
    JAXSAL_PROCESS_ID=str(process_id),
    JAX_PLATFORMS="cpu",
    JAX_NUM_CPU_DEVICES=str(devices),
    PYTHONUNBUFFERED="1",
  )
  if heartbeat_timeout is not None:
    env["JAXSAL_HEARTBEAT_TIMEOUT"] = str(heartbeat_timeout)
  return env


def _exit_status(rc: int) -> int:
  """A child's status as a shell reports it: 128 + N for death by signal N."""
  return 128 - rc if rc < 0 else rc


def run_local(args) -> int:
  """Runs ``args.command`` as ``args.processes`` processes; the first non-zero status or 0."""
  if args.processes < 1:
    raise ValueError(f"--processes must be >= 1; got {args.processes}")
  if args.devices_per_process < 1:
    raise ValueError(f"--devices-per-process must be >= 1; got {args.devices_per_process}")
  if args.heartbeat_timeout is not None and args.heartbeat_timeout < 1:
    raise ValueError(f"--heartbeat-timeout must be >= 1 second; got {args.heartbeat_timeout}")
  command = list(args.command)
  if command and command[0] == "--":
    command = command[1:]
  if not command:
    raise ValueError("no command to run: put it after --, e.g. -- jaxsal train --config ...")
  if shutil.which(command[0]) is None:
    raise ValueError(f"command {command[0]!r} is not found on PATH")
  if args.port is None:
    port = free_port()
  elif not 0 < args.port < 65536:
    raise ValueError(f"--port must be in 1..65535; got {args.port}")
  elif not port_free(args.port):
    raise ValueError(f"--port {args.port} is in use on this machine; pick another, or omit --port")
  else:
    port = args.port
  n = args.processes
  print(
    f"# launch: {n} processes x {args.devices_per_process} CPU devices, coordinator "
    f"127.0.0.1:{port}: {shlex.join(command)}",
    flush=True,
  )
  if args.dry_run:
    return 0
  procs = []
  lock = threading.Lock()

  def pump(i, stream):
    for line in iter(stream.readline, b""):
      if _GLOO_CHATTER.search(line):
        continue  # gloo's one line per connected rank
      with lock:
        sys.stdout.write(f"[{i}] " + line.decode(errors="replace"))
        sys.stdout.flush()
    stream.close()

  pumps = []
  for i in range(n):
    env = process_env(
      i, n, args.devices_per_process, port, heartbeat_timeout=args.heartbeat_timeout
    )
    p = subprocess.Popen(
      command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    procs.append(p)
    t = threading.Thread(target=pump, args=(i, p.stdout), daemon=True)
    t.start()
    pumps.append(t)

  def stop_all(sig):
    for p in procs:
      if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
          os.killpg(p.pid, sig)

  def on_interrupt(signum, frame):
    stop_all(signal.SIGINT)  # each process saves and exits 130 on its own

  old = signal.signal(signal.SIGINT, on_interrupt)
  first = 0
  try:
    while [p.poll() for p in procs].count(None):  # poll every process, not only the first
      failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode not in (None, 0)]
      if failed and not first:
        i, rc = failed[0]
        first = _exit_status(rc)
        print(
          f"# launch: process {i} exited with status {first}; stopping the others",
          file=sys.stderr,
          flush=True,
        )
        stop_all(signal.SIGTERM)
        deadline = time.monotonic() + args.grace
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
          time.sleep(0.05)
        stop_all(signal.SIGKILL)
      time.sleep(0.05)
  finally:
    signal.signal(signal.SIGINT, old)
    for p in procs:
      p.wait()
    for t in pumps:
      t.join(timeout=5)
  if not first:
    bad = [_exit_status(p.returncode) for p in procs if p.returncode]
    first = bad[0] if bad else 0
  return first


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
    q.add_argument(
      "--heartbeat-timeout",
      type=int,
      default=None,
      help="seconds after which a lost host stops the others (jaxsal's default 100)",
    )
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
      q.add_argument("--nodes", type=int, default=1, help="GPU nodes in the job (default 1)")
      q.add_argument("--node-rank", type=int, default=0, help="this node's rank, 0 .. nodes-1")
      q.add_argument(
        "--coordinator", default=None, help="HOST:PORT of node 0's coordinator (with --nodes > 1)"
      )
  q = sub.add_parser(
    "local",
    help="rehearse a multi-process job on this machine",
    description="Runs a command as several processes on this machine, each with its own CPU "
    "devices, joined by a coordinator on localhost (what a pod job does across hosts).",
  )
  q.add_argument("--processes", type=int, default=2, help="how many processes (default 2)")
  q.add_argument(
    "--devices-per-process", type=int, default=4, help="CPU devices per process (default 4)"
  )
  q.add_argument(
    "--port", type=int, default=None, help="the coordinator's port (default: a free one)"
  )
  q.add_argument(
    "--heartbeat-timeout",
    type=int,
    default=None,
    help="seconds after which a lost process stops the others (jaxsal's default 100)",
  )
  q.add_argument(
    "--grace", type=float, default=10.0, help="seconds the others get to stop after one fails"
  )
  q.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
  q.add_argument(
    "command", nargs=argparse.REMAINDER, help="-- then the command, e.g. jaxsal train ..."
  )
  args = p.parse_args(argv)
  if args.where == "local":
    try:
      return run_local(args)
    except ValueError as e:
      print(f"launch: error: {e}", file=sys.stderr)
      return 2
  if args.heartbeat_timeout is not None and args.heartbeat_timeout < 1:
    print(
      f"launch: error: --heartbeat-timeout must be >= 1 second; got {args.heartbeat_timeout}",
      file=sys.stderr,
    )
    return 2
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
      if args.nodes < 1:
        raise ValueError(f"--nodes must be >= 1; got {args.nodes}")
      if not 0 <= args.node_rank < args.nodes:
        raise ValueError(f"--node-rank must be in 0..{args.nodes - 1}; got {args.node_rank}")
      if args.nodes > 1 and not re.fullmatch(r"[^:\s]+:\d+", args.coordinator or ""):
        raise ValueError(
          f"--coordinator must be HOST:PORT of node 0 when --nodes > 1; got {args.coordinator!r}"
        )
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
