"""The masker's train state and its pure train step: FIX and CA (Phang, Park & Geras 2020).

One step, as the official code orders it:

1. the classifier runs on the clean batch and exposes its taps; under CA
   (``train_classifier=True``) it takes an SGD step on ``CE(f(x), y)``;
2. the masker maps the taps (through ``stop_gradient``) to a mask;
3. the classifier (after step 1) runs on the masked-in and masked-out images;
   the masker's loss is ``masking_objective`` of those logits;
4. under CA, with probability ``1 - historic_prob``, the classifier takes a
   second SGD step on ``CE(f(x*m), y) + CE(f(x*(1-m)), y)`` with the mask held
   fixed; otherwise that step is skipped (the official code's only use of its
   classifier "history", which it never evaluates);
5. the masker takes an Adam step.

As our extension, ``pool_size > 0`` keeps a real pool of past classifiers
(a ring of ``pool_size`` snapshots, one every ``pool_every`` steps): on the
steps where the masked classifier step is skipped, the masker's loss uses a
classifier drawn from the pool instead of the current one.

Randomness (the skip, the pool draw, the Gumbel noise) comes from
``fold_in(key(seed), step)``, so a run is the same on 1 or N devices and
after a resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxsal import objectives
from jaxsal.models._taps import TAPS_COLLECTION, strip_tap_collections
from jaxsal.train._state import cross_entropy

INFILLS = ("constant", "blur")


@flax.struct.dataclass
class MaskerTrainState:
  """Everything masker training carries from step to step.

  Attributes:
    step: int32 scalar.
    masker_params, masker_state: the masker's ``'params'`` and other
      collections (``{'batch_stats': ...}``).
    masker_opt: the masker optimizer's state.
    classifier_params, classifier_state: the classifier's ``'params'`` and
      other collections; fixed under FIX, trained under CA.
    classifier_opt: the classifier optimizer's state (empty under FIX).
    pool: ``{'params': ..., 'state': ...}`` with a leading axis of
      ``pool_size`` (the classifier pool, our extension), or ``{}``.
    pool_count: int32 scalar, how many snapshots the pool has received.
  """

  step: jax.Array
  masker_params: Any
  masker_state: Any
  masker_opt: Any
  classifier_params: Any
  classifier_state: Any
  classifier_opt: Any
  pool: Any
  pool_count: jax.Array

  @property
  def masker_variables(self) -> dict:
    return {"params": self.masker_params, **self.masker_state}

  @property
  def classifier_variables(self) -> dict:
    return {"params": self.classifier_params, **self.classifier_state}


def create_masker_state(
  masker,
  masker_tx: optax.GradientTransformation,
  classifier,
  classifier_variables: dict,
  classifier_tx: optax.GradientTransformation,
  key: jax.Array,
  input_shape: Sequence[int],
  *,
  pool_size: int = 0,
) -> MaskerTrainState:
  """Initialises the masker on the classifier's taps of a dummy batch. Pure (jit it to shard it).

  Args:
    masker: a ``jaxsal.models.Masker``.
    masker_tx, classifier_tx: the optimizers (``classifier_tx`` of a FIX run
      may be ``optax.set_to_zero()``).
    classifier: the tapped Linen classifier.
    classifier_variables: its trained variables.
    key: initialises the masker.
    input_shape: one input ``(1, H, W, C)``.
    pool_size: snapshots in the classifier pool (0: none).
  """
  variables = strip_tap_collections(classifier_variables)
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  x = jnp.zeros(tuple(input_shape), jnp.float32)
  _, sown = classifier.apply(variables, x, train=False, mutable=[TAPS_COLLECTION])
  feats = {n: sown[TAPS_COLLECTION][n] for n in masker.layers}
  mvars = dict(masker.init({"params": key, "gumbel": key}, feats, x.shape[1:3], train=False))
  mparams = mvars.pop("params")
  pool = {}
  if pool_size > 0:
    stack = lambda t: jax.tree.map(lambda a: jnp.repeat(a[None], pool_size, 0), t)
    pool = {"params": stack(params), "state": stack(state)}
  return MaskerTrainState(
    step=jnp.zeros((), jnp.int32),
    masker_params=mparams,
    masker_state=mvars,
    masker_opt=masker_tx.init(mparams),
    classifier_params=params,
    classifier_state=state,
    classifier_opt=classifier_tx.init(params),
    pool=pool,
    pool_count=jnp.zeros((), jnp.int32),
  )


def _run_classifier(classifier, params, state, x, *, train: bool, taps: Sequence[str] = ()):
  """Logits, the requested taps and the updated collections of one classifier pass."""
  mutable = [TAPS_COLLECTION] if taps else []
  if train and "batch_stats" in state:
    mutable.append("batch_stats")
  variables = {"params": params, **state}
  if not mutable:
    return classifier.apply(variables, x, train=train), {}, state
  logits, out = classifier.apply(variables, x, train=train, mutable=mutable)
  feats = {n: out[TAPS_COLLECTION][n] for n in taps}
  new_state = {**state, **{k: v for k, v in out.items() if k != TAPS_COLLECTION}}
  return logits, feats, new_state


def make_masker_step(
  classifier,
  masker,
  masker_tx: optax.GradientTransformation,
  classifier_tx: optax.GradientTransformation,
  *,
  train_classifier: bool,
  objective: str = "both",
  lam_in: float = 1.0,
  lam_out: float = 10.0,
  lam_tv: float = 1e-3,
  tv_counted_twice: bool = True,
  historic_prob: float = 0.5,
  pool_size: int = 0,
  pool_every: int = 100,
  infill: str = "constant",
  blur_sigma: float = 20.0,
  seed: int = 0,
):
  """Returns the pure ``step(state, batch) -> (state, metrics)`` of masker training.

  Args:
    classifier: the tapped Linen classifier.
    masker: a ``jaxsal.models.Masker``; its ``layers`` are the taps it reads.
    masker_tx: the masker's optimizer (the paper: grad-norm clip 10, Adam 1e-3,
      L2 weight decay 1e-4).
    classifier_tx: the classifier's optimizer under CA (SGD 1e-3, momentum
      0.9, weight decay 1e-4).
    train_classifier: CA (True) or FIX (False).
    objective, lam_in, lam_out, lam_tv, tv_counted_twice: passed to
      ``jaxsal.objectives.masking_objective`` (FIX preset 1, 10, 1e-3; CA 1,
      15, 1e-3).
    historic_prob: under CA, the probability of skipping the masked
      classifier step (0.5 in the official code).
    pool_size, pool_every: the classifier pool (our extension; 0 = off).
    infill: what replaces the removed pixels: ``'constant'`` (0, the dataset
      mean in normalised inputs) or ``'blur'`` (a Gaussian blur, sigma
      ``blur_sigma``).
    seed: the base of the per-step keys.

  ``batch`` holds ``'image'`` [B, H, W, C] float and ``'label'`` [B] int.
  Sharded over the mesh's data axis, BatchNorm statistics are the global
  batch's, so 1 and N devices take the same step.
  """
  if infill not in INFILLS:
    raise ValueError(f"unknown infill {infill!r}; known: {', '.join(INFILLS)}")
  if not 0.0 <= historic_prob <= 1.0:
    raise ValueError(f"historic_prob must be in [0, 1]; got {historic_prob!r}")
  if pool_size < 0 or pool_every <= 0:
    raise ValueError(f"pool_size must be >= 0 and pool_every > 0; got {pool_size}, {pool_every}")
  taps = tuple(masker.layers)
  use_pool = train_classifier and pool_size > 0

  def masked(x, mask):
    fill = None if infill == "constant" else objectives.infill_blur(x, blur_sigma)
    return (
      objectives.apply_mask(x, mask, side="in", infill=fill),
      objectives.apply_mask(x, mask, side="out", infill=fill),
    )

  def step(state: MaskerTrainState, batch: dict) -> tuple[MaskerTrainState, dict]:
    x, y = batch["image"], batch["label"]
    key = jax.random.fold_in(jax.random.key(seed), state.step)
    k_skip, k_pool, k_gumbel = jax.random.split(key, 3)
    cparams, cstate, copt = state.classifier_params, state.classifier_state, state.classifier_opt
    metrics = {}

    # 1. The classifier on the clean batch (and its own step under CA).
    def clean_loss(p):
      logits, feats, new_state = _run_classifier(
        classifier, p, cstate, x, train=train_classifier, taps=taps
      )
      return cross_entropy(logits, y).mean(), (logits, feats, new_state)

    if train_classifier:
      (ce, (logits_clean, feats, cstate)), grads = jax.value_and_grad(clean_loss, has_aux=True)(
        cparams
      )
      updates, copt = classifier_tx.update(grads, copt, cparams)
      cparams = optax.apply_updates(cparams, updates)
    else:
      ce, (logits_clean, feats, _) = clean_loss(cparams)
    metrics["classifier_loss"] = ce
    metrics["classifier_accuracy"] = jnp.mean(jnp.argmax(logits_clean, -1) == y)

    pool, pool_count = state.pool, state.pool_count
    skip = jax.random.uniform(k_skip) < historic_prob if train_classifier else jnp.array(True)
    # The classifier the masker's loss sees: the current one, or (pool) a past one.
    mparams_c, mstate_c = cparams, cstate
    if use_pool:
      save = state.step % pool_every == 0
      slot = pool_count % pool_size
      pool = jax.tree.map(
        lambda p, new: jnp.where(save, p.at[slot].set(new), p),
        pool,
        {"params": cparams, "state": cstate},
      )
      pool_count = pool_count + save.astype(jnp.int32)
      idx = jax.random.randint(k_pool, (), 0, jnp.minimum(pool_count, pool_size))
      drawn = jax.tree.map(lambda p: p[idx], pool)
      mparams_c = jax.tree.map(lambda a, b: jnp.where(skip, a, b), drawn["params"], cparams)
      mstate_c = jax.tree.map(lambda a, b: jnp.where(skip, a, b), drawn["state"], cstate)

    # 2-3. The masker's loss through the masked images.
    def masker_loss(mp):
      mvars = {"params": mp, **state.masker_state}
      mask, new_mstate = masker.apply(
        mvars, feats, x.shape[1:3], train=True, mutable=["batch_stats"], rngs={"gumbel": k_gumbel}
      )
      x_in, x_out = masked(x, mask)
      logits_in, _, s1 = _run_classifier(
        classifier, mparams_c, mstate_c, x_in, train=train_classifier
      )
      logits_out, _, s2 = _run_classifier(classifier, mparams_c, s1, x_out, train=train_classifier)
      loss, aux = objectives.masking_objective(
        mask,
        jax.lax.stop_gradient(logits_clean),
        logits_in,
        logits_out,
        y,
        lam_in=lam_in,
        lam_out=lam_out,
        lam_tv=lam_tv,
        objective=objective,
        tv_counted_twice=tv_counted_twice,
      )
      return loss, (aux, dict(new_mstate), mask, s2)

    (mloss, (aux, new_mstate, mask, masked_cstate)), mgrads = jax.value_and_grad(
      masker_loss, has_aux=True
    )(state.masker_params)
    metrics.update({("masker_loss" if k == "loss" else k): v for k, v in aux.items()})
    metrics["masker_grad_norm"] = optax.tree.norm(mgrads)

    # 4. Under CA, the classifier's step on the masked images (mask held fixed).
    if train_classifier:
      if not use_pool:
        cstate = masked_cstate  # the masked passes ran with the current classifier
      fixed = jax.lax.stop_gradient(mask)

      def masked_step(operands):
        p, o, s = operands

        def loss(p):
          x_in, x_out = masked(x, fixed)
          li, _, s1 = _run_classifier(classifier, p, s, x_in, train=True)
          lo, _, s2 = _run_classifier(classifier, p, s1, x_out, train=True)
          parts = []
          if objective in ("in", "both"):
            parts.append(cross_entropy(li, y).mean())
          if objective in ("out", "both"):
            parts.append(cross_entropy(lo, y).mean())
          return sum(parts), s2

        (_, s_new), g = jax.value_and_grad(loss, has_aux=True)(p)
        u, o = classifier_tx.update(g, o, p)
        s_keep = s if not use_pool else s_new
        return optax.apply_updates(p, u), o, s_keep

      # Computed every step and kept or dropped with ``where``: a ``lax.cond``
      # skips the work, but XLA:CPU runs the convolutions inside a conditional
      # about 12x slower (measured on the small CNN: 2.56 s against 0.20 s per
      # step), which costs far more than it saves.
      new = masked_step((cparams, copt, cstate))
      cparams, copt, cstate = jax.tree.map(
        lambda a, b: jnp.where(skip, a, b), (cparams, copt, cstate), new
      )
      metrics["skipped_masked_classifier_step"] = skip.astype(jnp.float32)

    # 5. The masker's step.
    mupdates, mopt = masker_tx.update(mgrads, state.masker_opt, state.masker_params)
    mparams = optax.apply_updates(state.masker_params, mupdates)
    new_state = state.replace(
      step=state.step + 1,
      masker_params=mparams,
      masker_state=new_mstate,
      masker_opt=mopt,
      classifier_params=cparams,
      classifier_state=cstate,
      classifier_opt=copt,
      pool=pool,
      pool_count=pool_count,
    )
    return new_state, metrics

  return step


def make_mask_fn(classifier, masker):
  """Returns ``mask_fn(state_or_variables, x) -> (mask [B, H, W], logits)`` for evaluation.

  The classifier and masker run in inference mode (running BatchNorm
  statistics; the Gumbel variant gives its hard ``1[logit > 0]`` mask).
  ``state_or_variables`` is a ``MaskerTrainState`` or a dict with
  ``'masker'`` and ``'classifier'`` variables.
  """
  taps = tuple(masker.layers)

  def mask_fn(state, x):
    if isinstance(state, MaskerTrainState):
      cvars, mvars = state.classifier_variables, state.masker_variables
    else:
      cvars, mvars = state["classifier"], state["masker"]
    params = cvars["params"]
    cstate = {k: v for k, v in cvars.items() if k != "params"}
    logits, feats, _ = _run_classifier(classifier, params, cstate, x, train=False, taps=taps)
    mask = masker.apply(mvars, feats, x.shape[1:3], train=False)
    return mask[..., 0], logits

  return mask_fn
