"""Training: the train state, pure steps, the sharded loop and orbax checkpoints."""

from jaxsal.train._checkpoint import CheckpointError, Checkpoints, CorruptCheckpointError
from jaxsal.train._generator_loop import (
  GeneratorState,
  load_generator,
  make_generator_step,
  train_generator,
  validate_generator_config,
)
from jaxsal.train._labels import RandomLabelSource
from jaxsal.train._logging import MetricWriter
from jaxsal.train._loop import (
  evaluate,
  load_classifier,
  train_and_evaluate,
  validate_config,
)
from jaxsal.train._masker_loop import (
  classifier_workdir,
  make_masker,
  train_masker,
  validate_masker_config,
)
from jaxsal.train._masker_step import (
  MaskerTrainState,
  create_masker_state,
  make_mask_fn,
  make_masker_step,
)
from jaxsal.train._optim import make_optimizer, make_schedule
from jaxsal.train._runner import NonFiniteError
from jaxsal.train._setup import prepare_workdir
from jaxsal.train._state import (
  TrainState,
  create_train_state,
  cross_entropy,
  make_eval_step,
  make_train_step,
)
from jaxsal.train._workdir import WorkdirError
from jaxsal.train._wsol_eval import evaluate_localization

__all__ = [
  "CheckpointError",
  "Checkpoints",
  "CorruptCheckpointError",
  "GeneratorState",
  "MaskerTrainState",
  "MetricWriter",
  "NonFiniteError",
  "RandomLabelSource",
  "TrainState",
  "WorkdirError",
  "classifier_workdir",
  "create_masker_state",
  "create_train_state",
  "cross_entropy",
  "evaluate",
  "evaluate_localization",
  "load_classifier",
  "load_generator",
  "make_eval_step",
  "make_generator_step",
  "make_mask_fn",
  "make_masker",
  "make_masker_step",
  "make_optimizer",
  "make_schedule",
  "make_train_step",
  "prepare_workdir",
  "train_and_evaluate",
  "train_generator",
  "train_masker",
  "validate_config",
  "validate_generator_config",
  "validate_masker_config",
]
