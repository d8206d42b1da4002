"""Ctrl-C without tracebacks: a training loop stops at a step boundary, anything else exits at once.

``install`` (called by the ``jaxsal`` command, never on import) routes SIGINT
through ``signal.set_wakeup_fd`` to a watcher thread, which acts even while
the main thread is inside XLA (compiling, running a step). While a training
loop runs (``loop``), the first Ctrl-C only sets a flag: the loop saves a
checkpoint at the end of the step and raises ``RunInterrupted``. Outside a
loop, or on a second Ctrl-C, the thread prints one line and ends the process
with ``os._exit(130)``: no ``KeyboardInterrupt`` is raised inside XLA, whose
threads would otherwise crash the interpreter's shutdown. Files are left as a
``kill -9`` leaves them, which the checkpoints and the workdir lock survive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

EXIT_STATUS = 130


class RunInterrupted(KeyboardInterrupt):
  """A training run stopped at a step boundary on Ctrl-C, after saving a checkpoint."""


class _State:
  installed = False
  loops = 0
  requested = False
  advice: Callable[[], str] = staticmethod(lambda: "rerun the same command")


def requested() -> bool:
  """Whether a Ctrl-C asked the running training loop to stop."""
  return _State.requested


@contextlib.contextmanager
def loop() -> Iterator[None]:
  """Marks a training loop: while it runs, the first Ctrl-C waits for a step boundary."""
  _State.loops += 1
  try:
    yield
  finally:
    _State.loops -= 1
    if not _State.loops:
      _State.requested = False


def exit_now(line: str | None = None) -> None:
  """Prints ``jaxsal: interrupted; <advice>`` (or ``line``) and ends the process with status 130."""
  # A closed or broken stdout must not keep the process alive.
  with contextlib.suppress(Exception):
    sys.stdout.flush()
  try:
    text = line or f"jaxsal: interrupted; {_State.advice()}"
  except Exception:
    text = "jaxsal: interrupted"
  with contextlib.suppress(Exception):
    os.write(2, (text + "\n").encode())
  os._exit(EXIT_STATUS)


def _on_signal() -> None:
  if _State.loops and not _State.requested:
    _State.requested = True
  else:
    exit_now()


def install(advice: Callable[[], str]) -> None:
  """Routes SIGINT to this module for the rest of the process (main thread only).

  Args:
    advice: ``() -> str``, what to do next (e.g. ``'rerun the same command to
      resume from step 40'``), computed when the signal comes.
  """
  _State.advice = staticmethod(advice)
  if _State.installed:
    return
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)

  def watch() -> None:
    while True:
      try:
        data = os.read(read_fd, 64)
      except OSError:
        return
      if not data:
        return
      if any(b == signal.SIGINT for b in data):
        _on_signal()

  threading.Thread(target=watch, name="jaxsal-sigint", daemon=True).start()
  # The Python-level handler does nothing: the C-level handler has already
  # written the signal number to ``write_fd``, and the thread acts on it.
  signal.signal(signal.SIGINT, lambda signum, frame: None)
  signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  _State.installed = True
