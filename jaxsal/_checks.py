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
