"""Multi-process initialisation: when to join a job, with which settings.

On a TPU pod slice, a multi-node GPU job or the local launcher
(``launch/launch.py local``) every process runs the same command, and
``jax.distributed.initialize`` must run before anything touches a device. On
one machine with one process it must not run at all. ``initialize`` decides
which, from (highest priority first) its arguments (the config's
``distributed`` settings), the ``JAXSAL_*`` environment variables, and the
cluster's own environment (TPU workers, SLURM, ``JAX_COORDINATOR_ADDRESS``).

Environment variables:

- ``JAXSAL_COORDINATOR_ADDRESS``: ``host:port`` of process 0's coordinator.
- ``JAXSAL_NUM_PROCESSES``: how many processes the job has.
- ``JAXSAL_PROCESS_ID``: this process's id, ``0 .. num_processes - 1``.
- ``JAXSAL_HEARTBEAT_TIMEOUT``: seconds after which a silent process counts as
  lost and the others stop (default 100).
- ``JAXSAL_INIT_TIMEOUT``: seconds to wait for every process to join (default 300).

On the CPU platform the collectives between processes go through gloo.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

import jax

# Environment variables that mean "this process is one of several hosts".
_MULTIHOST_HINTS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")
ENV_ADDRESS = "JAXSAL_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAXSAL_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXSAL_PROCESS_ID"
ENV_HEARTBEAT = "JAXSAL_HEARTBEAT_TIMEOUT"
ENV_INIT_TIMEOUT = "JAXSAL_INIT_TIMEOUT"
MODES = ("auto", "always", "never")
DEFAULT_HEARTBEAT_TIMEOUT = 100
DEFAULT_INIT_TIMEOUT = 300
# The keys of a ``distributed`` config that is a mapping.
SETTINGS = (
  "mode",
  "coordinator_address",
  "num_processes",
  "process_id",
  "heartbeat_timeout",
  "init_timeout",
)


def _tpu_pod_hosts() -> int:
  names = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return len([n for n in names.split(",") if n.strip()])


def _explicit_env() -> bool:
  return any(os.environ.get(k) for k in (ENV_ADDRESS, ENV_NUM_PROCESSES, ENV_PROCESS_ID))


def is_multihost_environment() -> bool:
  """Whether the environment describes a multi-process job (``JAXSAL_*``, TPU pod, SLURM, a coordinator)."""
  if _explicit_env() or any(os.environ.get(k) for k in _MULTIHOST_HINTS):
    return True
  if _tpu_pod_hosts() > 1:
    return True
  try:
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1
  except ValueError:
    return False


_initialized = False


def _int_setting(value: Any, name: str, *, low: int, high: int | None = None) -> int:
  try:
    out = int(value)
    ok = str(value).strip().lstrip("+-").isdigit() if isinstance(value, str) else out == value
  except (TypeError, ValueError):
    ok = False
  if not ok or isinstance(value, bool) or out < low or (high is not None and out >= high):
    bound = f"an integer >= {low}" + (f" and < {high}" if high is not None else "")
    raise ValueError(f"{name} must be {bound}; got {value!r}")
  return out


def _check_address(address: Any, name: str) -> tuple[str, int]:
  host, sep, port = str(address).rpartition(":")
  if not isinstance(address, str) or not sep or not host or not port.isdigit():
    raise ValueError(f"{name} must be 'host:port', e.g. '127.0.0.1:12355'; got {address!r}")
  if not 0 < int(port) < 65536:
    raise ValueError(f"{name}: the port must be in 1..65535; got {address!r}")
  return host, int(port)


def port_in_use(host: str, port: int) -> bool:
  """Whether a server already listens on ``host:port`` (a coordinator could not bind it)."""
  with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(("" if host in ("127.0.0.1", "localhost") else host.strip("[]"), port))
    except OSError:
      return True
  return False


def resolve_settings(distributed: str | Mapping[str, Any] | None = "auto") -> dict[str, Any]:
  """The settings ``initialize`` uses: the config's, then ``JAXSAL_*``, then defaults.

  Args:
    distributed: a mode (``'auto'``, ``'always'``, ``'never'``) or a mapping
      with some of ``SETTINGS``.

  Returns:
    A dict with every key of ``SETTINGS``; ``coordinator_address``,
    ``num_processes`` and ``process_id`` are None when neither the config nor
    the environment gives them (cluster detection then fills them in).

  Raises:
    ValueError: an unknown mode or key, a malformed address, a process id out
      of range, or only some of the three job settings given.

  Example:
    >>> s = resolve_settings({'coordinator_address': '127.0.0.1:9000',
    ...                       'num_processes': 2, 'process_id': 1})
    >>> s['num_processes'], s['process_id'], s['heartbeat_timeout']
    (2, 1, 100)
  """
  given = {"mode": distributed} if isinstance(distributed, str) or distributed is None else None
  if given is None:
    if not isinstance(distributed, Mapping):
      raise ValueError(
        f"distributed must be one of {MODES} or a mapping of {SETTINGS}; got {distributed!r}"
      )
    given = dict(distributed)
    unknown = sorted(set(given) - set(SETTINGS))
    if unknown:
      raise ValueError(f"distributed: unknown setting(s) {unknown}; known: {list(SETTINGS)}")
  mode = given.get("mode") or "auto"
  if mode not in MODES:
    raise ValueError(f"unknown distributed mode {mode!r}; known: {', '.join(sorted(MODES))}")
  env = {
    "coordinator_address": (ENV_ADDRESS, None),
    "num_processes": (ENV_NUM_PROCESSES, None),
    "process_id": (ENV_PROCESS_ID, None),
    "heartbeat_timeout": (ENV_HEARTBEAT, DEFAULT_HEARTBEAT_TIMEOUT),
    "init_timeout": (ENV_INIT_TIMEOUT, DEFAULT_INIT_TIMEOUT),
  }
  out: dict[str, Any] = {"mode": mode}
  source: dict[str, str] = {}
  for key, (var, default) in env.items():
    if given.get(key) is not None:
      out[key], source[key] = given[key], f"distributed.{key}"
    elif os.environ.get(var):
      out[key], source[key] = os.environ[var], var
    else:
      out[key], source[key] = default, key
  job = ("coordinator_address", "num_processes", "process_id")
  present = [k for k in job if out[k] is not None]
  if present and len(present) != len(job):
    missing = [f"{k} ({env[k][0]})" for k in job if out[k] is None]
    raise ValueError(
      f"a multi-process job needs all of coordinator_address, num_processes and process_id; "
      f"got {', '.join(f'{source[k]}={out[k]!r}' for k in present)} but not {', '.join(missing)}"
    )
  if present:
    _check_address(out["coordinator_address"], source["coordinator_address"])
    out["num_processes"] = _int_setting(out["num_processes"], source["num_processes"], low=1)
    out["process_id"] = _int_setting(
      out["process_id"], source["process_id"], low=0, high=out["num_processes"]
    )
  for key in ("heartbeat_timeout", "init_timeout"):
    out[key] = _int_setting(out[key], source[key], low=1)
  return out


def initialize(distributed: str | Mapping[str, Any] | None = "auto") -> bool:
  """Joins the multi-process job this process belongs to, if it belongs to one.

  Args:
    distributed: ``'auto'`` joins a job if the settings or the environment
      describe one; ``'always'`` calls ``jax.distributed.initialize``
      regardless (it then detects the cluster); ``'never'`` does nothing. A
      mapping gives the mode and any of ``coordinator_address``,
      ``num_processes``, ``process_id``, ``heartbeat_timeout`` and
      ``init_timeout`` (seconds), which win over the ``JAXSAL_*`` variables.

  Returns:
    True if this process is part of a multi-process job (joined by this call
    or an earlier one).

  Raises:
    ValueError: bad settings (see ``resolve_settings``); process 0's
      coordinator port is taken; or JAX has already started its devices in
      this process, too late to join a job.
  """
  global _initialized
  s = resolve_settings(distributed)
  if _initialized:
    return True
  explicit = s["coordinator_address"] is not None
  if s["mode"] == "never" or (
    s["mode"] == "auto" and not explicit and not is_multihost_environment()
  ):
    return False
  from jax._src import xla_bridge

  if xla_bridge.backends_are_initialized():
    raise ValueError(
      "a multi-process job must be joined before JAX starts its devices, but this process "
      "already has; call jaxsal.parallel.initialize() first thing"
    )
  platforms = os.environ.get("JAX_PLATFORMS", "") or str(jax.config.jax_platforms or "")
  if "cpu" in platforms.split(",") or not platforms:
    # Processes on CPU devices exchange their collectives through gloo.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs: dict[str, Any] = {
    "initialization_timeout": s["init_timeout"],
    "heartbeat_timeout_seconds": s["heartbeat_timeout"],
  }
  if explicit:
    host, port = _check_address(s["coordinator_address"], "coordinator_address")
    if s["process_id"] == 0 and port_in_use(host, port):
      raise ValueError(
        f"coordinator_address {s['coordinator_address']!r}: port {port} is in use on this "
        "machine; pick a free port (the launcher's --port)"
      )
    kwargs.update(
      coordinator_address=s["coordinator_address"],
      num_processes=s["num_processes"],
      process_id=s["process_id"],
    )
  jax.distributed.initialize(**kwargs)
  _initialized = True
  return True


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, Mapping):
    out: dict[str, Any] = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


_checks_made = 0


def check_same_everywhere(what: str, settings: Mapping[str, Any], *, timeout_s: int = 300) -> None:
  """Refuses to go on unless every process of the job was given the same ``settings``.

  Every process must call it at the same point. One process alone does nothing.

  Args:
    what: what the settings are, for the error (``'config'``).
    settings: a JSON-able mapping (nested mappings are compared key by key).
    timeout_s: how long to wait for the other processes' settings.

  Raises:
    ValueError: the settings differ; the message names the first differing
      keys and their values on each side. Every process raises it.
  """
  import json

  global _checks_made
  if jax.process_count() == 1:
    return
  from jax._src import distributed

  client = distributed.global_state.client
  _checks_made += 1
  key = f"jaxsal/same/{_checks_made}"
  me = jax.process_index()
  blob = json.dumps(settings, sort_keys=True, default=str)
  client.key_value_set(f"{key}/{me}", blob)
  others = range(1, jax.process_count()) if me == 0 else [0]
  mine = _flatten(json.loads(blob))
  for other in others:
    theirs = _flatten(json.loads(client.blocking_key_value_get(f"{key}/{other}", timeout_s * 1000)))
    differ = sorted(
      k for k in set(mine) | set(theirs) if mine.get(k, "<unset>") != theirs.get(k, "<unset>")
    )
    if differ:
      shown = "; ".join(
        f"{k}: {mine.get(k, '<unset>')!r} here, {theirs.get(k, '<unset>')!r} on process {other}"
        for k in differ[:5]
      )
      more = f" (and {len(differ) - 5} more)" if len(differ) > 5 else ""
      raise ValueError(
        f"the processes of this job were given different {what}s; process {me} differs from "
        f"process {other} in {shown}{more}. Every process must run the same command"
      )
