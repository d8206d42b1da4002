"""Root pytest configuration: the doctests of ``jaxsal/`` run with the tests' JAX setup.

``pyproject.toml`` collects ``--doctest-modules`` from ``jaxsal/`` next to
``tests/``, so the tests' JAX setup is made here, before anything imports JAX,
for both: the CPU platform, 8 simulated devices, cheap compilation, and one
persistent compilation cache shared by the pytest-xdist workers, the
notebooks' kernels and the CLI subprocesses of the tests (programs are keyed
by their HLO, jax version and flags, so a hit is the same program).

The examples are self-contained (users copy them), so no names are injected
into their namespace.
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR",
  os.path.join(tempfile.gettempdir(), f"jaxsal-tests-xla-cache-{os.getuid()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# Cheap compilation here and in every subprocess the tests start (the CLI's,
# the launcher's, the notebooks' kernels): they inherit the environment.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "true")

# JAX is imported only once the environment above is set.
import jax

jax.config.update("jax_num_cpu_devices", 8)


def pytest_configure(config):
  """Builds the ``small`` cluttered_digits once, before the workers start, for the doctests.

  The training examples read it from the default data folder (``JAXSAL_DATA_DIR``
  or ``~/.cache/jaxsal``). Built here, in the one controlling process, no two
  workers build it at once, and tfds' "preparing dataset" lines do not land in
  an example's expected output.
  """
  if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller built it
    return
  import contextlib
  import io

  from jaxsal import data

  with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    for split in ("train", "test"):
      data.load_source("cluttered_digits", split, config="small")


def pytest_sessionfinish(session, exitstatus):
  """In CI (``JAXSAL_CI`` set by ``.ci/run``) a skipped test fails the run: CI installs everything."""
  if not os.environ.get("JAXSAL_CI") or exitstatus != 0:
    return
  reporter = session.config.pluginmanager.get_plugin("terminalreporter")
  skipped = reporter.stats.get("skipped", []) if reporter is not None else []
  if skipped:
    names = ", ".join(sorted({r.nodeid for r in skipped}))
    reporter.write_line(f"JAXSAL_CI: {len(skipped)} skipped, which CI counts as failures: {names}")
    session.exitstatus = 1
