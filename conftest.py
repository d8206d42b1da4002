"""Root pytest configuration: the doctests of ``jaxsal/`` run with the tests' JAX setup.

``pyproject.toml`` collects ``--doctest-modules`` from ``jaxsal/`` next to
``tests/``; ``tests/conftest.py`` applies only below ``tests/``, so the same
setup (8 simulated CPU devices, the shared compilation cache, cheap
compilation) is made here, before anything imports JAX. Repeating it in
``tests/conftest.py`` is harmless: the environment uses ``setdefault`` and the
config updates set the same values.

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

import jax  # noqa: E402  (the environment above must be set before JAX initialises)

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_disable_most_optimizations", True)
