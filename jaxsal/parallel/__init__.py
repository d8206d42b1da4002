"""Meshes, shardings and multi-host initialisation."""

from jaxsal.parallel._distributed import (
  check_same_everywhere,
  initialize,
  is_multihost_environment,
  resolve_settings,
)
from jaxsal.parallel._mesh import (
  DATA_AXIS,
  batch_sharding,
  gather,
  local_rows,
  make_mesh,
  replicate,
  replicated,
  resolve_mesh_shape,
  shard_batch,
)

__all__ = [
  "DATA_AXIS",
  "batch_sharding",
  "check_same_everywhere",
  "gather",
  "initialize",
  "is_multihost_environment",
  "local_rows",
  "make_mesh",
  "replicate",
  "replicated",
  "resolve_mesh_shape",
  "resolve_settings",
  "shard_batch",
]
