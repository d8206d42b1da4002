"""Model-parameter randomisation (Adebayo et al. 2018) as transforms of the parameter tree.

A *layer* is a module of the parameter tree that holds arrays directly (for
example ``conv1`` or ``layer1_0/bn1``), named by its ``/``-joined path inside
the ``params`` collection. Layers are chosen with ``fnmatch`` patterns, one
pattern per stage, given in model order (input to logits); ``model_order``
finds that order from the program of any ``apply_fn``. Every re-drawn leaf
gets its own key, ``fold_in(key, crc32(path))``, so a leaf's new value
depends on the key and its path only: not on the order of the tree, nor on
the stage it is randomised in.
"""

from __future__ import annotations

import fnmatch
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxsal import _checks

MODES = ("cascading", "independent", "single")

# Each leaf is re-drawn from the initialiser of its kind, found by its name.
DEFAULT_INITIALIZERS: dict[str, Callable] = {
  "kernel": nn.initializers.he_normal(),  # convolutions and dense layers (fan-in)
  "bias": nn.initializers.zeros,
  "scale": nn.initializers.ones,  # normalisation scales
  "embedding": nn.initializers.normal(1.0),
}


def _key_name(k: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _path(path: tuple) -> str:
  return "/".join(_key_name(k) for k in path)


def _split(params: Any) -> tuple[str | None, Any]:
  """The ``params`` collection of a variables dict, or the tree itself."""
  if isinstance(params, Mapping) and "params" in params:
    return "params", params["params"]
  return None, params


def layer_names(params: Any) -> list[str]:
  """The layers of a parameter tree (modules holding arrays), in the tree's (sorted) order.

  Args:
    params: a parameter tree, or a variables dict with a ``params`` collection.

  Returns:
    Their ``/``-joined paths inside ``params``, e.g. ``['conv0', ..., 'head']``.
  """
  _, tree = _split(params)
  names: list[str] = []
  for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
    name = _path(path[:-1])
    if name not in names:
      names.append(name)
  return names


def model_order(apply_fn: Callable, params: Any, x: Any) -> list[str]:
  """The layers in the order the model uses them, from the traced program of ``apply_fn``.

  A layer's position is the first operation of the traced program that reads
  one of its arrays, so this works for any ``apply_fn`` (Linen, NNX, plain).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``.
    params: its parameters (a tree or a variables dict).
    x: an input batch (only its shape and dtype are used).

  Returns:
    The layer names (see ``layer_names``), input side first; layers the
    program never reads are left out.
  """
  coll, _ = _split(params)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  # Each leaf's layer, or None for leaves of other collections (batch_stats).
  names = []
  for path, _ in leaves:
    parts = [_key_name(k) for k in path]
    if coll is not None:
      names.append("/".join(parts[1:-1]) if parts[0] == coll else None)
    else:
      names.append("/".join(parts[:-1]))

  def run(flat, v):
    return apply_fn(jax.tree_util.tree_unflatten(treedef, flat), v)

  closed = jax.make_jaxpr(run)([v for _, v in leaves], x)
  position = {id(v): i for i, v in enumerate(closed.jaxpr.invars[: len(leaves)])}
  order: list[str] = []
  for eqn in closed.jaxpr.eqns:
    for v in eqn.invars:
      i = position.get(id(v))
      if i is not None and names[i] is not None and names[i] not in order:
        order.append(names[i])
  return order


def _select(names: list[str], patterns: Sequence[str]) -> list[list[str]]:
  if isinstance(patterns, str):
    raise TypeError(
      f"layers must be a sequence of patterns, one per stage; got the string "
      f"{patterns!r} (write [{patterns!r}])"
    )
  if len(patterns) == 0:
    raise ValueError(f"layers must name at least one layer pattern; the layers are {names}")
  stages = []
  for pat in patterns:
    hit = [n for n in names if fnmatch.fnmatchcase(n, pat)]
    if not hit:
      raise ValueError(f"layer pattern {pat!r} matches no layer; the layers are {names}")
    stages.append(hit)
  return stages


def _redraw(leaf: Any, key: jax.Array, name: str, path: str, inits: Mapping[str, Callable]) -> Any:
  init = inits.get(name)
  if init is None:
    raise ValueError(
      f"no initialiser for leaf {path!r} (name {name!r}); pass "
      f"initializers={{{name!r}: ...}} (known: {sorted(inits)})"
    )
  new = init(key, leaf.shape, jnp.float32).astype(leaf.dtype)
  if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
    new = jax.device_put(new, leaf.sharding)
  return new


def _randomized(
  params: Any,
  key: jax.Array,
  chosen: set[str],
  reset_batch_stats: bool,
  inits: Mapping[str, Callable],
) -> Any:
  coll, _ = _split(params)

  def visit(path, leaf):
    parts = [_key_name(k) for k in path]
    if coll is not None:
      collection, inner = parts[0], parts[1:]
    else:
      collection, inner = "params", parts
    layer, name = "/".join(inner[:-1]), inner[-1]
    if layer not in chosen:
      return leaf
    full = "/".join(parts)
    if collection == "params":
      return _redraw(leaf, jax.random.fold_in(key, zlib.crc32(full.encode())), name, full, inits)
    if collection == "batch_stats" and reset_batch_stats:
      fill = 1.0 if name == "var" else 0.0
      new = jnp.full(leaf.shape, fill, leaf.dtype)
      if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
        new = jax.device_put(new, leaf.sharding)
      return new
    return leaf

  return jax.tree_util.tree_map_with_path(visit, params)


def randomize(
  params: Any,
  key: jax.Array,
  *,
  layers: Sequence[str],
  mode: str = "cascading",
  reset_batch_stats: bool = False,
  initializers: Mapping[str, Callable] | None = None,
) -> Any:
  """Re-initialises layers of a parameter tree: the model-randomisation sanity check.

  Args:
    params: a parameter tree or a variables dict (``{'params': ...,
      'batch_stats': ...}``), e.g. from ``jaxsal.models.from_linen``.
    key: a typed PRNG key.
    layers: ``fnmatch`` patterns over layer names, one per stage, in model
      order (input side first); see ``model_order`` and ``layer_names``.
    mode: ``'cascading'``: stage ``k`` re-initialises the last ``k + 1``
      stages (from the logits down, cumulatively); ``'independent'``: stage
      ``k`` re-initialises only stage ``-(k + 1)``; ``'single'``: every
      listed layer at once, one tree.
    reset_batch_stats: also reset the BatchNorm statistics of re-initialised
      layers (mean 0, variance 1). The paper kept them (the default).
    initializers: leaf name -> ``init(key, shape, dtype)``, overriding
      ``DEFAULT_INITIALIZERS`` (He normal kernels, zero biases, unit scales).

  Returns:
    ``'single'``: a tree like ``params`` (same structure, shapes, dtypes
    and shardings). Otherwise a list of such trees, one per stage, the
    logits' stage first; ``stack`` makes one tree of them for ``vmap``.

  Raises:
    ValueError: an unknown mode, a pattern that matches no layer (the
      message lists the layers), a leaf without an initialiser.

  References:
    Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.attribution import gradient
    >>> from jaxsal.sanity import model_order, randomize, stack
    >>> k1, k2 = jax.random.split(jax.random.key(0))
    >>> params = {"hidden": {"kernel": jax.random.normal(k1, (64, 16))},
    ...           "out": {"kernel": jax.random.normal(k2, (16, 3))}}
    >>> def apply_fn(p, x):  # a 2-layer model on 8x8 grey images
    ...   h = jax.nn.relu(x.reshape(len(x), -1) @ p["hidden"]["kernel"])
    ...   return h @ p["out"]["kernel"]
    >>> x, t = jnp.ones((2, 8, 8, 1)), jnp.array([0, 2])
    >>> order = model_order(apply_fn, params, x)
    >>> order
    ['hidden', 'out']
    >>> stages = randomize(params, jax.random.key(1), layers=order)  # 'out', then both
    >>> [bool((s["hidden"]["kernel"] == params["hidden"]["kernel"]).all()) for s in stages]
    [True, False]
    >>> maps = jax.vmap(lambda p: gradient(apply_fn, p, x, t))(stack(stages))  # one call
    >>> maps.shape
    (2, 2, 8, 8, 1)
  """
  _checks.check_choice(mode, "mode", MODES)
  stages = _select(layer_names(params), layers)
  inits = dict(DEFAULT_INITIALIZERS, **(initializers or {}))
  if mode == "single":
    return _randomized(params, key, {n for s in stages for n in s}, reset_batch_stats, inits)
  out = []
  for k in range(len(stages)):
    top = stages[len(stages) - 1 - k :] if mode == "cascading" else [stages[len(stages) - 1 - k]]
    out.append(_randomized(params, key, {n for s in top for n in s}, reset_batch_stats, inits))
  return out


def stack(trees: Sequence[Any]) -> Any:
  """Stacks trees of one structure along a new leading axis (stages), for ``vmap``."""
  if not trees:
    raise ValueError("stack needs at least one tree")
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
