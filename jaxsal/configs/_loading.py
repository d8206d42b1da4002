"""Finding configs by name or path, and applying ``key=value`` overrides."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import pkgutil
from collections.abc import Iterable

import ml_collections

_PACKAGE = "jaxsal.configs"


def list_configs() -> list[str]:
  """The names of the configs that ship with jaxsal."""
  import jaxsal.configs as pkg

  return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def get_config(spec: str) -> ml_collections.ConfigDict:
  """Loads a config from ``NAME[:ARG]`` or ``path/to/file.py[:ARG]``.

  Args:
    spec: a shipped config's name (see ``list_configs()``) or a path to a
      Python file defining ``get_config(arg)``, optionally followed by
      ``:ARG`` to choose a variant.

  Returns:
    The ``ml_collections.ConfigDict``.

  Raises:
    ValueError: an unknown config name; a path that is missing, a folder or
      not a ``.py`` file; a file that fails to run or has no ``get_config``;
      a ``get_config`` that fails or returns something other than a
      ``ConfigDict``.

  Example:
    >>> cfg = get_config('small_cnn_digits:test')
    >>> cfg.model.name
    'small_cnn'
  """
  if not isinstance(spec, str) or not spec:
    raise ValueError(
      f"config must be a name like 'small_cnn_digits:cpu' or a .py path; got {spec!r}"
    )
  name, _, arg = spec.partition(":")
  is_file = name.endswith(".py") or os.sep in name
  if is_file:
    module = _load_file(name)
  else:
    if name not in list_configs():
      raise ValueError(
        f"unknown config {name!r}; known configs: {', '.join(list_configs())} "
        "(or give a path to a .py file)"
      )
    module = importlib.import_module(f"{_PACKAGE}.{name}")
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(f"config {name!r} defines no get_config(arg) function")
  call = f"get_config({arg or None!r}) of {name!r}"
  try:
    config = module.get_config(arg or None)
  except ValueError:
    raise  # a config's own refusal (an unknown variant) says what it expects
  except Exception as e:
    if not is_file:
      raise
    raise ValueError(f"{call} failed: {type(e).__name__}: {e}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"{call} returned {type(config).__name__}, not an ml_collections.ConfigDict")
  return config


def _load_file(name: str):
  """The module of the config file ``name``, or a ValueError saying why it cannot be one."""
  if os.path.isdir(name):
    raise ValueError(f"config file {name!r} is a folder; give a .py file defining get_config(arg)")
  if not os.path.isfile(name):
    raise ValueError(f"config file {name!r} does not exist")
  if not name.endswith(".py"):
    raise ValueError(
      f"config file {name!r} is not a .py file; give a Python file defining get_config(arg)"
    )
  mod_spec = importlib.util.spec_from_file_location("_jaxsal_user_config", name)
  module = importlib.util.module_from_spec(mod_spec)
  try:
    mod_spec.loader.exec_module(module)
  except (Exception, SystemExit) as e:
    # The file's own error, in one line: a config file is code the user wrote,
    # but the command still ends with jaxsal: error: and no traceback.
    where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
    raise ValueError(
      f"config file {name!r} failed to load: {type(e).__name__}{where}: {e}"
    ) from None
  return module


def _parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _as_config_dict(old: ml_collections.ConfigDict, value, item: str) -> ml_collections.ConfigDict:
  """A new value for a mapping entry: a dict, or names (a method list) that keep their settings.

  ``methods=('gradient', 'gradcam')`` on a ``{name: hparams}`` entry keeps
  the hyperparameters of the names that were there and gives new names none
  (the registry's defaults).
  """
  if isinstance(value, dict):
    return ml_collections.ConfigDict(value)
  if isinstance(value, str):
    value = (value,)
  if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
    return ml_collections.ConfigDict(
      {
        v: old[v].to_dict() if isinstance(old.get(v), ml_collections.ConfigDict) else {}
        for v in value
      }
    )
  raise ValueError(
    f"override {item!r}: expected a dict or a tuple of names for this mapping entry, "
    f"got {value!r} ({type(value).__name__})"
  )


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: Iterable[str]
) -> ml_collections.ConfigDict:
  """Applies ``key.sub=value`` overrides to a copy of ``config``.

  Values are parsed as Python literals (``1e-3``, ``(2, 2)``, ``True``,
  ``None``), and otherwise kept as strings.

  Args:
    config: the config to start from (left unchanged).
    overrides: strings ``dotted.key=value``.

  Returns:
    A new ConfigDict.

  Raises:
    KeyError: a key that does not exist (the message lists the keys at that level).
    ValueError: an override without ``=``, or a value of the wrong type.
  """
  config = ml_collections.ConfigDict(config.to_dict(), type_safe=config.is_type_safe)
  for item in overrides:
    if "=" not in item:
      raise ValueError(f"override {item!r} must look like key.sub=value")
    key, _, raw = item.partition("=")
    parts = key.strip().split(".")
    node = config
    for depth, part in enumerate(parts):
      known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      if part not in known:
        where = ".".join(parts[:depth]) or "the top level"
        raise KeyError(
          f"config has no key {key!r}: {part!r} is not among the keys of "
          f"{where}: {', '.join(known)}"
        )
      if depth < len(parts) - 1:
        node = node[part]
    value = _parse_value(raw)
    old = node[parts[-1]]
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    if isinstance(old, tuple) and isinstance(value, list):
      value = tuple(value)
    if isinstance(old, ml_collections.ConfigDict):
      value = _as_config_dict(old, value, item)
    try:
      node[parts[-1]] = value
    except TypeError as e:
      raise ValueError(
        f"override {item!r}: expected a value of type {type(old).__name__}, "
        f"got {value!r} ({type(value).__name__})"
      ) from e
  return config
