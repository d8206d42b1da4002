"""Multi-host initialisation behind a guard.

On a TPU pod slice or a multi-node GPU job every host runs the same command;
``jax.distributed.initialize()`` must run before anything touches a device.
On one machine it must not run at all. ``initialize`` decides which.
"""

from __future__ import annotations

import os

import jax

# Environment variables that mean "this process is one of several hosts".
_MULTIHOST_HINTS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def _tpu_pod_hosts() -> int:
  names = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return len([n for n in names.split(",") if n.strip()])


def is_multihost_environment() -> bool:
  """Whether the environment describes a multi-host job (TPU pod, SLURM, explicit coordinator)."""
  if any(os.environ.get(k) for k in _MULTIHOST_HINTS):
    return True
  if _tpu_pod_hosts() > 1:
    return True
  try:
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1
  except ValueError:
    return False


_initialized = False


def initialize(mode: str = "auto") -> bool:
  """Initialises multi-host JAX when (and only when) the job spans several hosts.

  Args:
    mode: ``'auto'`` initialises if the environment describes a multi-host job;
      ``'always'`` calls ``jax.distributed.initialize()`` regardless (it then
      auto-detects the cluster); ``'never'`` does nothing.

  Returns:
    True if ``jax.distributed.initialize`` was called by this or an earlier call.

  Raises:
    ValueError: an unknown mode.
  """
  global _initialized
  if mode not in ("auto", "always", "never"):
    raise ValueError(f"unknown distributed mode {mode!r}; known: always, auto, never")
  if _initialized:
    return True
  if mode == "never" or (mode == "auto" and not is_multihost_environment()):
    return False
  jax.distributed.initialize()
  _initialized = True
  return True
