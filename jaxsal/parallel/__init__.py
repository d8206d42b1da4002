"""Meshes, shardings and multi-host initialisation."""

from jaxsal.parallel._distributed import initialize, is_multihost_environment
from jaxsal.parallel._mesh import (
  DATA_AXIS,
  batch_sharding,
  make_mesh,
  replicate,
  replicated,
  resolve_mesh_shape,
  shard_batch,
)

__all__ = [
  "DATA_AXIS",
  "batch_sharding",
  "initialize",
  "is_multihost_environment",
  "make_mesh",
  "replicate",
  "replicated",
  "resolve_mesh_shape",
  "shard_batch",
]
