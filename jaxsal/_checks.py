"""Input validation shared by every subpackage.

Errors name the argument, what it got and what was expected (DESIGN.md,
convention 7). These checks run on static shapes and dtypes, so they work
before tracing and under ``jit`` alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _shape(x: Any) -> tuple[int, ...]:
  return tuple(getattr(x, "shape", np.shape(x)))


def check_images(x: Any, name: str = "x", *, channels: int | None = None) -> None:
  """Checks that ``x`` is a float NHWC image batch.

  Args:
    x: the array to check, expected ``[B, H, W, C]`` floating point.
    name: the argument's name, used in the error.
    channels: if given, the expected number of channels ``C``.

  Raises:
    ValueError: wrong rank, or a layout that looks like NCHW.
    TypeError: a non-floating dtype.
  """
  shape = _shape(x)
  if len(shape) != 4:
    raise ValueError(
      f"{name} must be a batch of images of shape [B, H, W, C] (NHWC); "
      f"got rank {len(shape)} with shape {shape}. "
      + ("Add a batch axis with x[None]." if len(shape) == 3 else "")
    )
  # Tracers have a dtype; only plain sequences need converting.
  dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
  if not np.issubdtype(dtype, np.floating):
    raise TypeError(
      f"{name} must be a floating-point image batch; got dtype {dtype}. "
      "Convert integer images with x.astype(jnp.float32) / 255."
    )
  _, h, w, c = shape
  if channels is not None and c != channels:
    if (shape[1] == channels and c not in (1, 3, 4)) or (shape[1] == channels and c == h):
      raise ValueError(
        f"{name} looks like NCHW (shape {shape}, channels={channels} on axis 1); "
        f"jaxsal expects NHWC [B, H, W, C]: use jnp.transpose({name}, (0, 2, 3, 1))."
      )
    raise ValueError(
      f"{name} must have {channels} channels in its last axis (NHWC); got shape {shape}."
    )
  if channels is None and c > 4 and shape[1] in (1, 3, 4):
    raise ValueError(
      f"{name} looks like NCHW (shape {shape}: {shape[1]} on axis 1, {c} on the last axis); "
      f"jaxsal expects NHWC [B, H, W, C]: use jnp.transpose({name}, (0, 2, 3, 1))."
    )


def check_choice(value: Any, name: str, known: Any) -> None:
  """Raises a ValueError naming ``name`` and the known choices if ``value`` is not one."""
  known = sorted(known)
  if value not in known:
    raise ValueError(f"unknown {name} {value!r}; known: {', '.join(map(str, known))}")


def check_positive_int(value: Any, name: str) -> None:
  """Raises a ValueError unless ``value`` is an int > 0."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
    raise ValueError(f"{name} must be a positive integer; got {value!r}")


def check_number(
  value: Any,
  name: str,
  *,
  low: float | None = None,
  high: float | None = None,
  low_open: bool = False,
  high_open: bool = False,
) -> float:
  """Returns ``value`` as a float, or raises a ValueError naming ``name``, the value and the range.

  The value must be a finite real number (not a bool) in ``[low, high]``,
  each bound excluded when its ``*_open`` is set and absent when None.

  Example:
    >>> check_number(0.5, "historic_prob", low=0.0, high=1.0)
    0.5
    >>> check_number(-1.0, "masker.temperature", low=0.0, low_open=True)
    Traceback (most recent call last):
    ...
    ValueError: masker.temperature must be a number > 0; got -1.0
  """
  if low is not None and high is not None:
    want = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
  elif low is not None:
    want = f"{'>' if low_open else '>='} {low:g}"
  elif high is not None:
    want = f"{'<' if high_open else '<='} {high:g}"
  else:
    want = "(finite)"
  ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
  x = float(value) if ok else float("nan")
  if ok and np.isfinite(x):
    ok = (low is None or (x > low if low_open else x >= low)) and (
      high is None or (x < high if high_open else x <= high)
    )
  else:
    ok = False
  if not ok:
    raise ValueError(f"{name} must be a number {want}; got {value!r}")
  return x


def check_bool(value: Any, name: str) -> None:
  """Raises a ValueError unless ``value`` is True or False (``1`` or ``'yes'`` are refused)."""
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be True or False; got {value!r}")
