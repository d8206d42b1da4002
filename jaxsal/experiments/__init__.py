"""Experiments behind the ``jaxsal`` commands, one module each, one interface.

Every experiment module exposes:

* ``validate(config)``: checks the config before anything is written;
  raises ``ValueError`` naming the entry;
* ``run(config, workdir, *, progress=True) -> dict``: trains or reuses what
  it needs in ``workdir``, computes, writes its results there, returns them;
* ``summary(result) -> str``: what the command prints;
* ``COMMAND``, ``HELP``, ``DEFAULT_CONFIG``, ``CONFIG_HELP``,
  ``WORKDIR_HELP``, ``SET_EXAMPLE``: its command line.

``jaxsal.cli`` builds one subcommand per module in :data:`EXPERIMENTS` (and
``jaxsal.demo``, which has the same interface and composes the others).
Experiments take their attribution methods as ``methods = {name:
hyperparameters}`` from their config and get each from
``jaxsal.attribution.get_method``; a sub-config they need (the classifier,
a masker) is nested in theirs, so ``--set`` reaches it.

Example:
  >>> from jaxsal import experiments
  >>> experiments.get_experiment("grid_pointing").COMMAND
  'grid-pointing'
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Module names, in the order the command line lists them.
EXPERIMENTS = (
  "train_classifier",
  "train_masker",
  "train_generator",
  "localization",
  "grid_pointing",
  "sanity_checks",
  "reconstruction",
)


def get_experiment(name: str) -> ModuleType:
  """The experiment module ``name`` (one of :data:`EXPERIMENTS`), imported.

  Raises:
    ValueError: an unknown name (the known ones listed).
  """
  if name not in EXPERIMENTS:
    raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
  return importlib.import_module(f"jaxsal.experiments.{name}")


__all__ = ["EXPERIMENTS", "get_experiment"]
