"""Replacing every ``jax.nn.relu`` in a traced program by another function.

Guided backpropagation and the deconvnet change only the backward pass of
the ReLUs. Rather than asking models to use a special activation, the model is
traced to a jaxpr and re-evaluated with each ReLU swapped for a ``custom_vjp``
function of the same forward value. This works for any ``apply_fn`` whose
ReLUs are ``jax.nn.relu`` (also reached as ``flax.linen.relu``,
``flax.nnx.relu`` and Equinox's ``jax.nn.relu``), whatever module system
built it, including ReLUs inside ``jit``, ``remat``, ``scan``, ``cond`` and
``while`` bodies.

``jax.nn.relu`` is a ``custom_jvp`` function whose primal is ``max(x, 0)``;
in a jaxpr it is a ``custom_jvp_call`` whose body is exactly that. A bare
``jnp.maximum(x, 0)`` is not recognised (it is an ordinary ``max``, and
rewriting every ``max`` would also rewrite max-pooling's ties).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.extend.core as jcore
from jax.extend.core import primitives as prims

_MAX = "max"


def _is_zero_literal(v: Any) -> bool:
  if not isinstance(v, jcore.Literal):
    return False
  try:
    return bool(v.val == 0)
  except (TypeError, ValueError):
    return False


def _is_relu(eqn: Any) -> bool:
  """Whether ``eqn`` is a call of ``jax.nn.relu``."""
  if eqn.primitive is not prims.custom_jvp_call_p:
    return False
  eqns = eqn.params["call_jaxpr"].jaxpr.eqns
  # jax.nn.relu is jit-decorated under its custom_jvp: unwrap single calls.
  while len(eqns) == 1 and eqns[0].primitive is prims.jit_p:
    eqns = eqns[0].params["jaxpr"].jaxpr.eqns
  return (
    len(eqns) == 1
    and eqns[0].primitive.name == _MAX
    and any(_is_zero_literal(v) for v in eqns[0].invars)
  )


def _sub_jaxprs(params: dict[str, Any]):
  for value in params.values():
    items = value if isinstance(value, (tuple, list)) else (value,)
    for item in items:
      if isinstance(item, jcore.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jcore.Jaxpr):
        yield item


def _contains_relu(jaxpr: Any, memo: dict[int, bool]) -> bool:
  key = id(jaxpr)
  if key not in memo:
    memo[key] = any(
      _is_relu(e) or any(_contains_relu(j, memo) for j in _sub_jaxprs(e.params)) for e in jaxpr.eqns
    )
  return memo[key]


# Primitives whose body can be evaluated in place without changing the value:
# a call, rematerialisation, or a custom derivative of a function that itself
# contains ReLUs (its custom rule is then replaced by differentiating the
# rewritten body, which is what guided backpropagation asks for).
_INLINE = {
  prims.jit_p: "jaxpr",
  prims.closed_call_p: "call_jaxpr",
  prims.remat_p: "jaxpr",
  prims.custom_jvp_call_p: "call_jaxpr",
  prims.custom_vjp_call_p: "call_jaxpr",
}


class _Rewriter:
  """Evaluates jaxprs with every ReLU replaced by ``relu``; counts the replacements."""

  def __init__(self, relu: Callable[[jax.Array], jax.Array]):
    self.relu = relu
    self.count = 0
    self.memo: dict[int, bool] = {}

  def eval(self, jaxpr: Any, consts: list[Any], args: list[Any]) -> list[Any]:
    env: dict[Any, Any] = {}

    def read(v):
      return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts):
      env[v] = val
    for v, val in zip(jaxpr.invars, args):
      env[v] = val
    for eqn in jaxpr.eqns:
      invals = [read(v) for v in eqn.invars]
      outs = self._eqn(eqn, invals)
      if not eqn.primitive.multiple_results:
        outs = [outs]
      for v, val in zip(eqn.outvars, outs):
        env[v] = val
    return [read(v) for v in jaxpr.outvars]

  def _eqn(self, eqn: Any, invals: list[Any]) -> Any:
    prim, params = eqn.primitive, eqn.params
    if _is_relu(eqn):
      self.count += 1
      n = params["num_consts"]
      out = self.relu(invals[n])
      return [out] if prim.multiple_results else out
    if not any(_contains_relu(j, self.memo) for j in _sub_jaxprs(params)):
      return prim.bind(*invals, **_bind_params(prim, params))
    if prim in _INLINE:
      body = params[_INLINE[prim]]
      if isinstance(body, jcore.ClosedJaxpr):
        outs = self.eval(body.jaxpr, list(body.consts), invals)
      else:
        outs = self.eval(body, [], invals)
      return outs if prim.multiple_results else outs[0]
    # Control flow (scan, while, cond, ...): rebuild each body with the
    # replacement and bind the primitive with the new bodies.
    new_params = {k: self._rewrite_param(v) for k, v in params.items()}
    return prim.bind(*invals, **_bind_params(prim, new_params))

  def _rewrite_param(self, value: Any) -> Any:
    if isinstance(value, tuple) and value and all(isinstance(v, jcore.ClosedJaxpr) for v in value):
      return tuple(self._rewrite_closed(v) for v in value)
    if isinstance(value, jcore.ClosedJaxpr):
      return self._rewrite_closed(value)
    if isinstance(value, jcore.Jaxpr):
      raise NotImplementedError(
        "guided backpropagation cannot rewrite ReLUs inside a primitive that holds an "
        "open jaxpr; please report the model that produced it"
      )
    return value

  def _rewrite_closed(self, closed: Any) -> Any:
    if not _contains_relu(closed.jaxpr, self.memo):
      return closed
    avals = [
      jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype, weak_type=v.aval.weak_type)
      for v in closed.jaxpr.invars
    ]
    return jax.make_jaxpr(lambda *a: self.eval(closed.jaxpr, list(closed.consts), list(a)))(*avals)


def _bind_params(prim: Any, params: dict[str, Any]) -> dict[str, Any]:
  bound = prim.get_bind_params(params)
  if isinstance(bound, tuple):  # older jax: (subfuns, params)
    subfuns, bound = bound
    if subfuns:
      raise NotImplementedError(f"cannot re-bind {prim.name} with sub-functions")
  return bound


def replace_relu(
  fn: Callable[..., Any], relu: Callable[[jax.Array], jax.Array], *, name: str = "this method"
) -> Callable[..., Any]:
  """Returns ``fn`` with every ``jax.nn.relu`` in its traced program replaced by ``relu``.

  Args:
    fn: any function of arrays (e.g. ``apply_fn(params, x)``).
    relu: the replacement, with the same forward value as ``jax.nn.relu``.
    name: used in the error message.

  Returns:
    A function with ``fn``'s signature and outputs.

  Raises:
    ValueError (when called): ``fn`` contains no ``jax.nn.relu``.
  """

  def rewritten(*args):
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    rewriter = _Rewriter(relu)
    outs = rewriter.eval(closed.jaxpr, list(closed.consts), jax.tree.leaves(args))
    if rewriter.count == 0:
      raise ValueError(
        f"{name} found no jax.nn.relu in apply_fn's traced program, so it would equal "
        "the plain gradient. It rewrites ReLUs written as jax.nn.relu (flax.linen.relu, "
        "flax.nnx.relu); a ReLU written as jnp.maximum(x, 0) is not recognised."
      )
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

  return rewritten
