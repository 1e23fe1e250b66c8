"""The device mesh of data parallelism, and moving arrays between the host and it, in one
process or many.

With `jax.distributed` a mesh spans the devices of several processes, and an
array is global: each process holds only its devices' shards. Host data that every
process holds in full (small datasets, example indices, the initial state) is
placed with `make_array_from_callback`; data that each process holds only its own
part of (streamed batches) with `make_array_from_process_local_data`. With one
process both reduce to `jax.device_put`.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

AXIS = 'batch'  # The mesh axis of data parallelism (the pmap programming model's name).


class DeviceCountError(ValueError):
  """`config.num_devices` asks for more devices than the job has."""


def create_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh named `batch` over the first `num_devices` devices (all if None)."""
  devices = jax.devices()
  if num_devices is None:
    num_devices = len(devices)
  if not 1 <= num_devices <= len(devices):
    raise DeviceCountError(
      f'num_devices={num_devices}, but {len(devices)} {devices[0].platform} device(s) are '
      'available; set --config.num_devices to at most that (unset: all of them).'
    )
  return jax.make_mesh(
    (num_devices,),
    (AXIS,),
    devices=devices[:num_devices],
    axis_types=(jax.sharding.AxisType.Explicit,),
  )


def put_global(tree: object, sharding: NamedSharding) -> object:
  """Places host arrays that every process holds in full onto the mesh with `sharding`."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def place(value):
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree.map(place, tree)


def put_process_local(tree: object, sharding: NamedSharding) -> object:
  """Places each process's own slice of a batch (split on the sharded axis) onto the mesh."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
    lambda value: jax.make_array_from_process_local_data(sharding, np.asarray(value)), tree
  )


def replicated_to_host(tree: object) -> object:
  """A replicated (or single-process) array as numpy, read from a local shard."""
  return jax.tree.map(
    lambda x: np.asarray(x if x.is_fully_addressable else x.addressable_data(0)), tree
  )


def gathered_to_host(tree: object) -> object:
  """An array sharded over the mesh as one whole numpy array on every process."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return multihost_utils.process_allgather(tree, tiled=True)
