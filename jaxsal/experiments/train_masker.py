"""``jaxsal train-masker``: a masking model (FIX or CA, Phang, Park & Geras 2020) on a classifier.

Example:
  >>> from jaxsal import configs
  >>> from jaxsal.experiments import train_masker
  >>> train_masker.validate(configs.get_config("masker_digits:test"))
"""

from __future__ import annotations

import time
from typing import Any

COMMAND = "train-masker"
HELP = "train a masking model (FIX or CA) on a classifier's taps"
DEFAULT_CONFIG = "masker_digits"
CONFIG_HELP = (
  "a masker config (masker_digits[:ca|fix|ca_in|ca_out|ca_fewshot|fix_fewshot|ca_pool|test], "
  "masker_resnet50_imagenet[:ca|fix|cpu]) or a .py path"
)
WORKDIR_HELP = (
  "the masker's checkpoints and metrics go here (rerun to resume); the classifier is read "
  "from classifier_workdir, by default <workdir>/classifier"
)
SET_EXAMPLE = "classifier_workdir=runs/small_cnn"


def validate(config) -> None:
  """Checks a masker config before anything runs (see ``jaxsal.train.validate_masker_config``)."""
  from jaxsal import train

  train.validate_masker_config(config)


def run(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Trains the masker in ``workdir`` (and its classifier where it has none) and evaluates it.

  Returns:
    ``jaxsal.train.train_masker``'s result, with ``seconds`` and the ``config``.
  """
  from jaxsal import train

  t0 = time.perf_counter()
  out = dict(train.train_masker(config, workdir, progress=progress))
  out["seconds"] = time.perf_counter() - t0
  out["config"] = config
  return out


def summary(result: dict[str, Any]) -> str:
  """One line: the mode, the step reached, the localisation metrics and the workdir."""
  c, ev = result["config"], result["eval"]
  step, secs = int(result["state"].step), result["seconds"]
  if not ev.get("count"):
    return (
      f"jaxsal: trained a {c.mode.upper()} masker to step {step} in {secs:.1f}s; the dataset "
      f"has no boxes or masks, so it was not evaluated; workdir {result['workdir']}"
    )
  return (
    f"jaxsal: trained a {c.mode.upper()} masker ({c.objective.name}) to step {step} in "
    f"{secs:.1f}s; on {ev['count']} test images: LE {ev['le']:.3f} OM {ev['om']:.3f} "
    f"F1 {ev['f1']:.3f} SM {ev['sm']:.3f} PxAP {ev['pxap']:.3f} mean mask {ev['area']:.3f}; "
    f"workdir {result['workdir']}"
  )
