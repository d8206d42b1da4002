"""``jaxsal train``: a classifier trained (or resumed) from a config.

Example:
  >>> from jaxsal import configs
  >>> from jaxsal.experiments import train_classifier
  >>> train_classifier.validate(configs.get_config("small_cnn_digits:test"))
"""

from __future__ import annotations

import time
from typing import Any

COMMAND = "train"
HELP = "train a classifier from a config"
DEFAULT_CONFIG = None  # required
CONFIG_HELP = "a config name with an optional variant (small_cnn_digits:cpu) or a .py path"
WORKDIR_HELP = "checkpoints, metrics.jsonl and config.json go here; rerun to resume"
SET_EXAMPLE = "num_train_steps=100"


def validate(config) -> None:
  """Checks a classifier config before anything runs (see ``jaxsal.train.validate_config``)."""
  from jaxsal import train

  train.validate_config(config)


def run(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Trains the classifier in ``workdir`` (resuming from its checkpoints) and evaluates it.

  Returns:
    ``jaxsal.train.train_and_evaluate``'s result, with ``seconds`` and the ``config``.
  """
  from jaxsal import train

  t0 = time.perf_counter()
  out = dict(train.train_and_evaluate(config, workdir, progress=progress))
  out["seconds"] = time.perf_counter() - t0
  out["config"] = config
  return out


def summary(result: dict[str, Any]) -> str:
  """One line: the model, the step reached, the evaluation accuracy and the workdir."""
  c, ev = result["config"], result["eval"]
  return (
    f"jaxsal: trained {c.model.name} on {c.dataset.name} to step {int(result['state'].step)} "
    f"in {result['seconds']:.1f}s; eval accuracy {ev['eval_accuracy']:.4f} on "
    f"{ev['eval_count']} images; workdir {result['workdir']}"
  )
