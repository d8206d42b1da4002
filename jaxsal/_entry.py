"""The ``jaxsal`` console script's entry point: Ctrl-C is handled from its first line.

The console script runs ``from jaxsal._entry import main`` and then
``main()``. Until ``jaxsal.cli.main`` installs its own handler, the modules
of the command are being imported (``jaxsal.cli``, argparse, then JAX), and
Python's default handler would raise ``KeyboardInterrupt`` inside an import
and print a traceback. This module imports nothing but ``os``, ``signal`` and
``sys``, and ``main`` installs a handler before it imports anything else:
Ctrl-C then prints one line and exits with status 130. Importing this module
changes nothing (pytest's doctest collection imports it). Only the
interpreter's own start-up, before any code of the package runs, is left to
Python.
"""

import os
import signal
import sys

INTERRUPTED = 130


def _interrupted(signum, frame) -> None:
  """One line and exit 130, at once (nothing has been done yet)."""
  advice = "rerun the command"
  cli = sys.modules.get("jaxsal.cli")
  try:
    if cli is not None and hasattr(cli, "_advice"):
      advice = cli._advice(sys.argv[1:])
  except Exception:  # the plain advice is right before anything ran
    pass
  os.write(2, f"jaxsal: interrupted; {advice}\n".encode())
  os._exit(INTERRUPTED)


def main() -> int:
  """Installs the Ctrl-C handler, then imports and runs ``jaxsal.cli.main``."""
  signal.signal(signal.SIGINT, _interrupted)
  from jaxsal.cli import main as cli_main

  return cli_main()
