"""One device mesh, and the two shardings everything uses.

Parameters are replicated (``P()``); batches are split along their leading
axis over the ``'data'`` mesh axis (``P('data')``). A mesh shape may hold one
``-1`` axis, which takes whatever devices the others leave.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def resolve_mesh_shape(shape: Mapping[str, int], num_devices: int) -> dict[str, int]:
  """Fills in a ``-1`` axis of ``shape`` so that the sizes multiply to ``num_devices``.

  Args:
    shape: axis name -> size; at most one size may be ``-1``.
    num_devices: how many devices the mesh spans.

  Returns:
    A dict with the same axes, in order, and concrete sizes.

  Raises:
    ValueError: more than one ``-1``, a size below 1, or sizes that do not
      multiply to ``num_devices``.

  Example:
    >>> resolve_mesh_shape({'data': -1, 'model': 2}, 8)
    {'data': 4, 'model': 2}
  """
  shape = dict(shape)
  if not shape:
    raise ValueError("mesh shape must name at least one axis, e.g. {'data': -1}")
  free = [k for k, v in shape.items() if v == -1]
  if len(free) > 1:
    raise ValueError(
      f"mesh shape {shape} has more than one -1 axis ({free}); at most one may be -1"
    )
  bad = {
    k: v for k, v in shape.items() if v != -1 and (not isinstance(v, (int, np.integer)) or v < 1)
  }
  if bad:
    raise ValueError(f"mesh shape {shape}: axis sizes must be positive integers or -1; got {bad}")
  fixed = math.prod(v for v in shape.values() if v != -1)
  if free:
    if num_devices % fixed:
      raise ValueError(
        f"mesh shape {shape}: the fixed axes use {fixed} devices, which does not divide "
        f"the {num_devices} available"
      )
    shape[free[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise ValueError(f"mesh shape {shape} spans {fixed} devices but {num_devices} are in use")
  return shape


def make_mesh(
  shape: Mapping[str, int] | None = None, *, devices: Sequence[Any] | None = None
) -> Mesh:
  """Builds the device mesh.

  Args:
    shape: axis name -> size, one size may be ``-1``; default ``{'data': -1}``.
    devices: the devices to span; default all of ``jax.devices()``.

  Returns:
    A ``jax.sharding.Mesh``.

  Example:
    >>> mesh = make_mesh({'data': -1})
    >>> mesh.shape['data'] == jax.device_count()
    True
  """
  shape = {DATA_AXIS: -1} if shape is None else shape
  devices = list(jax.devices() if devices is None else devices)
  sizes = resolve_mesh_shape(shape, len(devices))
  if devices == list(jax.devices()):
    return jax.make_mesh(
      tuple(sizes.values()),
      tuple(sizes.keys()),
      axis_types=(jax.sharding.AxisType.Auto,) * len(sizes),
    )
  arr = np.asarray(devices, dtype=object).reshape(tuple(sizes.values()))
  return Mesh(arr, tuple(sizes.keys()), axis_types=(jax.sharding.AxisType.Auto,) * len(sizes))


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of parameters and optimizer state: a full copy on every device."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, axis: str = DATA_AXIS) -> NamedSharding:
  """The sharding of a batch: its leading axis split over mesh axis ``axis``."""
  if axis not in mesh.axis_names:
    raise ValueError(f"mesh has no axis {axis!r}; its axes are {mesh.axis_names}")
  return NamedSharding(mesh, P(axis))


def shard_batch(batch: Any, mesh: Mesh, axis: str = DATA_AXIS) -> Any:
  """Turns this host's slice of a batch into global arrays sharded over ``axis``.

  Every host calls this with its own slice (the leading axis holds this
  host's examples); the result is a tree of global ``jax.Array`` whose leading
  axis is the sum over hosts.

  Args:
    batch: a tree of host-local numpy arrays sharing a leading batch axis.
    mesh: the mesh.
    axis: the mesh axis the batch is split over.

  Returns:
    The same tree of global arrays, sharded ``P(axis)``.

  Raises:
    ValueError: the local batch does not split evenly over this host's devices.
  """
  sharding = batch_sharding(mesh, axis)
  local_devices = (
    mesh.shape[axis] // jax.process_count() if jax.process_count() > 1 else mesh.shape[axis]
  )

  def put(x):
    x = np.asarray(x)
    if x.ndim == 0:
      raise ValueError("shard_batch: every leaf needs a leading batch axis; got a scalar")
    if x.shape[0] % max(local_devices, 1):
      raise ValueError(
        f"shard_batch: the host's batch of {x.shape[0]} does not split over its "
        f"{local_devices} devices on mesh axis {axis!r}; use a batch size divisible by "
        f"{mesh.shape[axis]} (the global data-parallel width)"
      )
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places ``tree`` on every device of ``mesh`` (replicated)."""
  return jax.device_put(tree, replicated(mesh))


def local_rows(mesh: Mesh, n: int, axis: str = DATA_AXIS) -> slice:
  """The rows of an ``n``-row global batch that this process holds when it is sharded over ``axis``.

  Where every process has the whole batch (grids composed from the same
  seed, say), each passes only these rows to ``shard_batch``. One process
  holds all of them.

  Raises:
    ValueError: ``n`` does not split over the axis, or this process's rows
      are not one contiguous block (a mesh whose devices interleave processes).

  Example:
    >>> local_rows(make_mesh(), 16)
    slice(0, 16, None)
  """
  width = mesh.shape[axis]
  if n % width:
    raise ValueError(
      f"a batch of {n} rows does not split over the {width} devices of axis {axis!r}"
    )
  if jax.process_count() == 1:
    return slice(0, n)
  index_map = batch_sharding(mesh, axis).addressable_devices_indices_map((n,))
  starts = sorted({(idx[0].start or 0, idx[0].stop or n) for idx in index_map.values()})
  lo, hi = starts[0][0], starts[-1][1]
  covered = sum(b - a for a, b in starts)
  if covered != hi - lo:
    raise ValueError(
      f"this process's devices hold rows {starts} of mesh axis {axis!r}, not one block; "
      "build the mesh with jaxsal.parallel.make_mesh"
    )
  return slice(lo, hi)


def gather(tree: Any) -> Any:
  """A tree of (possibly sharded, multi-process) arrays as numpy arrays, whole, on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils

  return multihost_utils.process_allgather(tree, tiled=True)
