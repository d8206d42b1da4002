"""A workdir's guards: one writer at a time (a lock) and what run made it (its identity).

A training run holds ``run.lock`` in its workdir (``fcntl.flock``, with the
holder's pid written in it) for as long as it runs, so a second run on the
same workdir is refused at once; the kernel releases the lock when the
holder dies, so a run killed with ``kill -9`` leaves no stale lock behind.
In a workdir that records an identity, the pid is written only once the
run's identity has been accepted (``check_identity``): a run refused for its
identity leaves ``run.lock`` as it found it, byte for byte.

``identity.json`` records what the workdir is: the kind of run, the model,
the data and its preprocessing, the optimizer, the seed and batch size, and
for a masker a fingerprint of the classifier it explains. A rerun with the
same identity resumes; another one is refused, with the differing keys named,
before anything is written. The keys that may change between resumes
(``num_train_steps``, ``log_every``, ``eval_every``, the checkpoint and mesh
settings) are not part of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import tempfile
from typing import Any

LOCK_FILE = "run.lock"
IDENTITY_FILE = "identity.json"


class WorkdirError(ValueError):
  """A workdir cannot be used by this run: another run holds it, or another run made it."""


def plain(value: Any) -> Any:
  """``value`` as JSON gives it back (tuples as lists, ConfigDicts as dicts, numpy as numbers)."""
  if hasattr(value, "to_json_best_effort"):
    return json.loads(value.to_json_best_effort())
  return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else v))


def write_json_atomic(path: str, content: Any) -> None:
  """Writes ``content`` as JSON to ``path`` through a temporary file and a rename."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path))
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(content, f, indent=2, sort_keys=True)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


# The locks this process holds, by the real path of their workdir: how
# ``check_identity`` finds the lock whose pid it may now write.
_HELD: dict[str, WorkdirLock] = {}


class WorkdirLock:
  """An exclusive advisory lock on ``<workdir>/run.lock``, held until ``release``.

  The lock is taken at once; this process's pid and host are written into
  the file (``claim``) at once in a workdir that records no identity yet, and
  otherwise only when ``check_identity`` accepts this run's identity there,
  so a run refused for its identity does not touch the file.

  Args:
    workdir: an existing directory.

  Raises:
    WorkdirError: another process holds the lock (the message names its pid,
      or says that it is a run starting whose identity is being checked).

  Example:
    >>> import tempfile
    >>> work = tempfile.mkdtemp()
    >>> lock = WorkdirLock(work)
    >>> WorkdirLock(work)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    jaxsal.train._workdir.WorkdirError: workdir ... is in use by another run (pid ...
    >>> lock.release()
    >>> WorkdirLock(work).release()
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = _read_holder(fd)
      os.close(fd)
      raise WorkdirError(
        f"workdir {workdir!r} is in use by another run ({holder}); wait for it to end, "
        "or use another --workdir"
      ) from e
    self._fd = fd
    self._claimed = False
    self._key = os.path.realpath(workdir)
    _HELD[self._key] = self
    if not os.path.exists(os.path.join(workdir, IDENTITY_FILE)):
      self.claim()

  def claim(self) -> None:
    """Writes this process's pid and host into the lock file (once; while the lock is held)."""
    if self._fd is None or self._claimed:
      return
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    self._claimed = True

  def release(self) -> None:
    """Releases the lock (the file stays; an unlocked file is no lock)."""
    if self._fd is not None:
      if _HELD.get(self._key) is self:
        del _HELD[self._key]
      with contextlib.suppress(OSError):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def _read_holder(fd: int) -> str:
  """Who holds the lock, as the file says: ``pid P on HOST``.

  The file may still name an earlier holder while a new one checks its
  identity (it writes its pid only once accepted): a pid of this host that
  is no longer alive is such a leftover.
  """
  try:
    text = os.pread(fd, 200, 0).decode(errors="replace").split()
  except OSError:
    text = []
  if not text:
    return "pid unknown"
  pid, host = text[0], (text[1] if len(text) > 1 else None)
  if host in (None, socket.gethostname()) and not _alive(pid):
    return "pid unknown: a run that is starting, its identity being checked"
  return f"pid {pid}" + (f" on {host}" if host else "")


def _alive(pid: str) -> bool:
  """Whether process ``pid`` of this host exists (True when that cannot be told)."""
  try:
    os.kill(int(pid), 0)
  except (ValueError, OverflowError, PermissionError):
    return True
  except ProcessLookupError:
    return False
  return True


def read_identity(workdir: str) -> dict | None:
  """The ``identity.json`` of ``workdir``, or None when it has none."""
  path = os.path.join(workdir, IDENTITY_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirError(f"{path} cannot be read ({e}); use a new --workdir") from e


def check_identity(workdir: str, identity: dict, *, partial: bool = False) -> dict | None:
  """Checks that ``workdir`` was made by a run of this ``identity`` (if it records one).

  Args:
    workdir: the run's workdir.
    identity: this run's identity (JSON-plain values).
    partial: compare only the keys of ``identity`` (the rest is checked later).

  Returns:
    The recorded identity, or None when the workdir records none yet. When
    the whole identity was checked (``partial`` False) and this process
    holds the workdir's ``WorkdirLock``, its pid is now written in it.

  Raises:
    WorkdirError: another kind of run, or a run with other settings, made it;
      the message names the differing keys with both values. The lock file
      is left untouched.

  Example:
    >>> import tempfile
    >>> work = tempfile.mkdtemp()
    >>> write_identity(work, {'kind': 'classifier', 'image_shape': [32, 32, 1]})
    >>> check_identity(work, {'kind': 'classifier', 'image_shape': [64, 64, 1]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    jaxsal.train._workdir.WorkdirError: workdir ... was made by a different run: image_shape [32, 32, 1] (the workdir's) != [64, 64, 1] (this run's); use a new --workdir
  """
  recorded = read_identity(workdir)
  if recorded is None:
    if not partial:
      _claim(workdir)
    return None
  want = plain(identity)
  kind, was = want.get("kind"), recorded.get("kind")
  if kind != was:
    raise WorkdirError(
      f"workdir {workdir!r} holds another kind of run: a {was} run (its {IDENTITY_FILE}), "
      f"not a {kind} run; use a new --workdir"
    )
  keys = sorted(want) if partial else sorted(set(want) | set(recorded))
  missing = _Missing()
  diffs = [
    f"{k} {_show(recorded.get(k, missing))} (the workdir's) != {_show(want.get(k, missing))} "
    "(this run's)"
    for k in keys
    if recorded.get(k, missing) != want.get(k, missing)
  ]
  if diffs:
    raise WorkdirError(
      f"workdir {workdir!r} was made by a different run: {'; '.join(diffs)}; use a new --workdir"
    )
  if not partial:
    _claim(workdir)
  return recorded


def _claim(workdir: str) -> None:
  """Writes this process's pid into the lock it holds on ``workdir``, if it holds one."""
  lock = _HELD.get(os.path.realpath(workdir))
  if lock is not None:
    lock.claim()


def _show(value: Any) -> str:
  if isinstance(value, str):
    return repr(value)
  if isinstance(value, (int, float, list, dict, type(None))):
    return json.dumps(value)
  return "(not set)"


class _Missing:
  pass


def write_identity(workdir: str, identity: dict) -> None:
  """Writes ``identity.json`` into ``workdir`` atomically."""
  write_json_atomic(os.path.join(workdir, IDENTITY_FILE), plain(identity))


def fingerprint(identity: dict, step: int) -> str:
  """A short hash of a trained model's identity and its checkpoint step (what a masker depends on)."""
  blob = json.dumps({"identity": plain(identity), "step": int(step)}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]
