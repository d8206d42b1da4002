"""The classifier train state and its pure train and eval steps."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a classifier's training carries from step to step.

  Attributes:
    step: int32 scalar, the number of steps taken.
    params: the model's ``'params'`` collection.
    model_state: the other collections (``{'batch_stats': ...}``, or ``{}``).
    opt_state: the optax state.
  """

  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any

  @property
  def variables(self) -> dict:
    """The full variables dict, as ``apply_fn(params, x)`` takes it."""
    return {"params": self.params, **self.model_state}


def create_train_state(
  model, tx: optax.GradientTransformation, key: jax.Array, input_shape: tuple[int, ...]
) -> TrainState:
  """Initialises a model and its optimizer. Pure: jit it with ``out_shardings`` to create it sharded."""
  from jaxsal.models import init_model

  variables = dict(init_model(model, key, input_shape))
  params = variables.pop("params")
  return TrainState(
    step=jnp.zeros((), jnp.int32), params=params, model_state=variables, opt_state=tx.init(params)
  )


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def make_train_step(model, tx: optax.GradientTransformation):
  """Returns the pure ``train_step(state, batch) -> (state, metrics)`` of a classifier.

  ``batch`` holds ``'image'`` [B, H, W, C] float and ``'label'`` [B] int. With
  a batch sharded over the mesh, BatchNorm statistics are those of the global
  batch, so 1 and N devices compute the same step.
  """

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    collections = list(state.model_state.keys())

    def loss_fn(params):
      variables = {"params": params, **state.model_state}
      if collections:
        logits, new_model_state = model.apply(
          variables, batch["image"], train=True, mutable=collections
        )
      else:
        logits, new_model_state = model.apply(variables, batch["image"], train=True), {}
      loss = cross_entropy(logits, batch["label"]).mean()
      return loss, (logits, new_model_state)

    (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
      "loss": loss,
      "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
      "grad_norm": optax.tree.norm(grads),
    }
    new_state = state.replace(
      step=state.step + 1, params=params, model_state=dict(new_model_state), opt_state=opt_state
    )
    return new_state, metrics

  return train_step


def make_eval_step(model):
  """Returns ``eval_step(state, batch) -> sums`` over the examples with ``batch['valid'] == 1``.

  The sums (``loss``, ``correct``, ``count``) add up across batches, so the
  last, padded batch of an epoch counts each real example once.
  """

  def eval_step(state: TrainState, batch: dict) -> dict:
    logits = model.apply(state.variables, batch["image"], train=False)
    valid = batch["valid"].astype(jnp.float32)
    loss = cross_entropy(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {
      "loss": jnp.sum(loss * valid),
      "correct": jnp.sum(correct * valid),
      "count": jnp.sum(valid),
    }

  return eval_step
