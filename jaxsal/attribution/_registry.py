"""Attribution methods by name, with defaults that work on any image size.

A command line, a config file or a notebook names a method as a string;
``get_method(name, **hparams)`` turns it into one callable with the common
signature ``fn(apply_fn, params, x, target, *, key=None) -> maps``, whatever
the method's own shape (``smoothgrad`` and ``var`` wrap a base method, RISE
shares its masks across the batch). ``jaxsal explain`` and ``jaxsal demo``
both go through it, so they compute the same map for the same name.

``key`` is one typed key or ``[B]`` keys, one per image. Per-image keys make
every stochastic method's map of an image independent of the batch it is
in, except RISE's: its masks are shared by the batch and drawn with the
first key.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp

from jaxsal.attribution._competition import cgi
from jaxsal.attribution._gradcam import gradcam, guided_gradcam
from jaxsal.attribution._gradient import gradient, gradient_x_input
from jaxsal.attribution._guided import deconvnet, guided_backprop
from jaxsal.attribution._integrated_gradients import integrated_gradients
from jaxsal.attribution._meaningful_perturbation import meaningful_perturbation
from jaxsal.attribution._occlusion import occlusion
from jaxsal.attribution._optimized_mask import optimized_mask
from jaxsal.attribution._rise import rise
from jaxsal.attribution._smoothgrad import smoothgrad
from jaxsal.attribution._var import var


def _signature_hparams(function: Callable) -> frozenset[str]:
  """The keyword-only arguments of ``function`` that name a hyperparameter.

  ``key`` is passed by ``get_method``'s callable itself, and ``return_*``
  flags change what the method returns, so neither is a hyperparameter.
  """
  params = inspect.signature(function).parameters.values()
  return frozenset(
    p.name
    for p in params
    if p.kind is inspect.Parameter.KEYWORD_ONLY
    and p.name != "key"
    and not p.name.startswith("return_")
  )


@dataclasses.dataclass(frozen=True)
class _Entry:
  description: str
  function: Callable  # the method itself: its signature lists the hyperparameters
  defaults: Mapping[str, Any]
  make: Callable[[dict[str, Any]], Callable]  # hparams -> fn(af, p, x, t, key)
  stochastic: bool = False  # needs a key
  # Hyperparameters of a wrapper that are not the function's own (a base method's name).
  extra: frozenset[str] = frozenset()
  # hparams -> class_maps_hook(af, p, x, targets, *, key): how for_classes and
  # all_classes explain many classes at once (see _classes.class_maps_hook).
  hook: Callable[[dict[str, Any]], Callable] | None = None

  @property
  def hparams(self) -> frozenset[str]:
    """Every name ``get_method`` accepts for this method."""
    return _signature_hparams(self.function) | self.extra


def _plain(method: Callable) -> Callable[[dict[str, Any]], Callable]:
  def make(h):
    return lambda af, p, x, t, key: method(af, p, x, t, key=key, **h)

  return make


def _occlusion(h):
  def fn(af, p, x, t, key):
    kw = dict(h)
    side = min(x.shape[1], x.shape[2])
    if kw.get("patch") is None:
      kw["patch"] = max(side // 8, 1)
    if kw.get("stride") is None:
      kw["stride"] = max(kw["patch"] // 2, 1) if isinstance(kw["patch"], int) else kw["patch"]
    return occlusion(af, p, x, t, **kw)

  return fn


def _first(key):
  """RISE draws one set of masks for the whole batch: from the first of per-image keys."""
  return key[0] if key is not None and jnp.ndim(key) == 1 else key


def _rise(h):
  return lambda af, p, x, t, key: rise(af, p, x, t, key=_first(key), **h)


def _hook_of(method: Callable, first_key: bool = False) -> Callable[[dict[str, Any]], Callable]:
  """``method``'s own class_maps_hook, with the entry's hyperparameters bound."""

  def make(h):
    def hook(af, p, x, targets, *, key=None):
      return method.class_maps_hook(af, p, x, targets, key=_first(key) if first_key else key, **h)

    return hook

  return make


def _meaningful_perturbation(h):
  def fn(af, p, x, t, key):
    kw = dict(h)
    if kw.get("mask_size") is None:
      kw["mask_size"] = max(min(x.shape[1], x.shape[2]) // 8, 2)
    return meaningful_perturbation(af, p, x, t, key=key, **kw)

  return fn


def _smoothgrad(h):
  kw = dict(h)
  base = get_method(kw.pop("method"))
  wrapped = smoothgrad(
    lambda af, p, x, t, key=None: base(af, p, x, t),
    samples=kw["samples"],
    sigma=kw["sigma"],
    mode=kw["mode"],
    chunk_size=kw["chunk_size"],
  )
  return lambda af, p, x, t, key: wrapped(af, p, x, t, key=key)


def _var(h):
  kw = dict(h)
  base_name = kw.pop("method")
  base = {
    "gradient": gradient,
    "gradient_x_input": gradient_x_input,
    "integrated_gradients": integrated_gradients,
    "guided_backprop": guided_backprop,
  }[base_name]
  steps = kw.pop("steps")  # integrated gradients' steps; unused by the other bases
  base_kw = {"steps": steps} if base_name == "integrated_gradients" else {}
  wrapped = var(base, **kw)
  return lambda af, p, x, t, key: wrapped(af, p, x, t, **base_kw)


_VAR_BASES = ("gradient", "gradient_x_input", "integrated_gradients", "guided_backprop")
# smoothgrad averages a deterministic method: the noise is its only randomness.
_SMOOTHGRAD_BASES = (
  "gradient",
  "gradient_x_input",
  "integrated_gradients",
  "guided_backprop",
  "deconvnet",
  "gradcam",
  "guided_gradcam",
)


def _entry_of(
  description: str,
  function: Callable,
  defaults: Mapping[str, Any] | None = None,
  *,
  make: Callable[[dict[str, Any]], Callable] | None = None,
  stochastic: bool = False,
  extra: tuple[str, ...] = (),
  hook: Callable[[dict[str, Any]], Callable] | None = None,
) -> _Entry:
  """One registry entry; ``make`` defaults to calling ``function`` with the hyperparameters."""
  return _Entry(
    description,
    function,
    dict(defaults or {}),
    make or _plain(function),
    stochastic=stochastic,
    extra=frozenset(extra),
    hook=hook,
  )


# The one table of methods: every command, experiment and the demo take their
# methods from here. A new method is one file and one line here.
_ENTRIES: dict[str, _Entry] = {
  "gradient": _entry_of("the gradient of the class logit with respect to the input", gradient),
  "gradient_x_input": _entry_of("the gradient times the input", gradient_x_input),
  "integrated_gradients": _entry_of(
    "integrated gradients from a zero baseline (Gauss-Legendre)",
    integrated_gradients,
    {"steps": 32, "chunk_size": 8},
  ),
  "smoothgrad": _entry_of(
    "the gradient averaged over noisy copies of the input",
    smoothgrad,
    {"method": "gradient", "samples": 16, "sigma": 0.15, "mode": "smoothgrad", "chunk_size": 8},
    make=_smoothgrad,
    stochastic=True,
    extra=("method",),
  ),
  "guided_backprop": _entry_of(
    "guided backpropagation (ReLU gradients of negative signals cut)", guided_backprop
  ),
  "deconvnet": _entry_of("the deconvnet rule for ReLUs", deconvnet),
  "gradcam": _entry_of(
    "Grad-CAM on the last stage's features (tap l4), upsampled", gradcam, {"layer": "l4"}
  ),
  "guided_gradcam": _entry_of(
    "guided backpropagation times Grad-CAM", guided_gradcam, {"layer": "l4"}
  ),
  "occlusion": _entry_of(
    "the logit's drop when a patch is blanked (patch: 1/8 of the side by default)",
    occlusion,
    {"patch": None, "stride": None, "chunk_size": 16},
    make=_occlusion,
  ),
  "rise": _entry_of(
    "RISE: random masks weighted by the class probability",
    rise,
    {"num_masks": 256, "chunk_size": 32},
    make=_rise,
    stochastic=True,
    hook=_hook_of(rise, first_key=True),
  ),
  "meaningful_perturbation": _entry_of(
    "a smooth deletion mask, optimised per image (Fong & Vedaldi 2017)",
    meaningful_perturbation,
    {"steps": 300, "mask_size": None},
    make=_meaningful_perturbation,
  ),
  "optimized_mask": _entry_of(
    "a preservation mask optimised per image from a random start (Thakur & Fischmeister "
    "2020, our reading)",
    optimized_mask,
    {"steps": 300},
    stochastic=True,
  ),
  "cgi": _entry_of(
    "competitive gradient x input: pixels the class wins against all classes (CGI)",
    cgi,
    {"chunk_size": None},
    hook=_hook_of(cgi),
  ),
  "var": _entry_of(
    "VAR over gradient x input: attribution the contrastive classes share is damped",
    var,
    {"method": "gradient_x_input", "steps": 32},
    make=_var,
    extra=("method", "steps"),
  ),
}


def method_names() -> tuple[str, ...]:
  """Every name ``get_method`` knows, in a fixed order (gradients, CAM, perturbation, classes)."""
  return tuple(_ENTRIES)


def method_description(name: str) -> str:
  """One line on what ``name``'s map is."""
  return _entry(name).description


def method_defaults(name: str) -> dict[str, Any]:
  """The hyperparameters ``get_method(name)`` uses unless told otherwise (None: from the image)."""
  return dict(_entry(name).defaults)


def method_hparams(name: str) -> tuple[str, ...]:
  """The hyperparameter names ``get_method(name, ...)`` accepts, sorted."""
  return tuple(sorted(_entry(name).hparams))


def needs_key(name: str) -> bool:
  """Whether ``name``'s maps are drawn at random (then ``key`` is required)."""
  return _entry(name).stochastic


def _entry(name: str) -> _Entry:
  if name not in _ENTRIES:
    raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(_ENTRIES))}")
  return _ENTRIES[name]


def get_method(name: str, **hparams: Any) -> Callable:
  """The method called ``name`` with its defaults, overridden by ``hparams``.

  Args:
    name: one of :func:`method_names`.
    **hparams: the method's own keyword arguments (see :func:`method_hparams`);
      for ``smoothgrad`` and ``var``, ``method`` names the base method
      (``var``'s ``steps`` go to integrated gradients as its base).

  Returns:
    ``fn(apply_fn, params, x, target, *, key=None) -> [B, H, W, C]`` maps,
    a pure function that works under ``jit`` and ``vmap``.

  Raises:
    ValueError: an unknown name, or a hyperparameter the method does not take
      (the ones it takes are listed).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxsal.attribution import get_method
    >>> w = jnp.arange(64 * 3.0).reshape(64, 3)  # a linear model on 8x8 grey images, 3 classes
    >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    >>> fn = get_method("integrated_gradients", steps=8)
    >>> maps = fn(apply_fn, w, jnp.ones((2, 8, 8, 1)), jnp.array([2, 0]))
    >>> maps.shape, bool(jnp.allclose(maps[0].ravel(), w[:, 2]))  # x * w; here x = 1
    ((2, 8, 8, 1), True)
  """
  e = _entry(name)
  unknown = sorted(set(hparams) - e.hparams)
  if unknown:
    known = ", ".join(sorted(e.hparams)) or "none"
    raise ValueError(
      f"method {name!r} takes no hyperparameter "
      f"{', '.join(repr(u) for u in unknown)}; it takes: {known}"
    )
  h = {**e.defaults, **hparams}
  if name == "smoothgrad" and h["method"] not in _SMOOTHGRAD_BASES:
    raise ValueError(
      f"smoothgrad's method must be one of {', '.join(_SMOOTHGRAD_BASES)}; got {h['method']!r}"
    )
  if name == "var" and h["method"] not in _VAR_BASES:
    raise ValueError(f"var's method must be one of {', '.join(_VAR_BASES)}; got {h['method']!r}")
  core = e.make(h)

  def fn(apply_fn, params, x, target, *, key=None):
    return core(apply_fn, params, x, target, key)

  if e.hook is not None:
    fn.class_maps_hook = e.hook(h)
  fn.__name__ = name
  fn.__doc__ = f"{name}: {e.description} ({', '.join(f'{k}={v!r}' for k, v in h.items())})."
  return fn
