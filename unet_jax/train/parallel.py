"""Data-parallel drivers over one step function, and multi-host start-up.

Two drivers run the same per-device ``train_step``/``eval_step``:

- ``pmap`` (default): ``jax.pmap`` over the local devices; batches carry a leading
  [num_local_devices] axis and the state is replicated per device.
- ``mesh``: ``jax.jit`` of ``jax.shard_map`` over a 1-D ``Mesh`` of all global devices;
  batches are global ``jax.Array``s assembled from each host's local share and the state is
  a replicated global array.

Both average gradients and BatchNorm statistics over the device axis ``"batch"``, so either
gives the parameters a single device would get on the same global batch.
"""

import collections
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from unet_jax import launch
from unet_jax.errors import FlagError
from unet_jax.run.state import TrainState
from unet_jax.train import losses, steps

AXIS = "batch"
DRIVERS = ("pmap", "mesh")


@dataclasses.dataclass(frozen=True)
class Driver:
    """How state and batches are placed on devices and how the steps are mapped.

    Attributes:
      name: "pmap" or "mesh".
      layout: batch layout the input pipeline must produce ("pmap" or "mesh").
      train_step: (device_state, device_batch) -> (device_state, metrics); donates the state.
      eval_step: (device_state, device_batch) -> summed eval outputs.
      put_state: host TrainState -> device state.
      get_state: device state -> host TrainState of numpy arrays (one copy).
      put_batch: host numpy batch -> device batch.
      get_metrics: device metrics -> host numpy scalars/arrays (one copy).
    """

    name: str
    layout: str
    train_step: Callable
    eval_step: Callable
    put_state: Callable[[TrainState], Any]
    get_state: Callable[[Any], TrainState]
    put_batch: Callable[[dict[str, np.ndarray]], Any]
    get_metrics: Callable[[Any], dict[str, np.ndarray]]


def _first_copy(tree: Any) -> Any:
    """Host numpy copy of a replicated (pmap) or fully replicated (mesh) pytree."""

    def fetch(x):
        if isinstance(x, jax.Array):
            return np.asarray(x.addressable_data(0))
        return x

    return jax.tree_util.tree_map(fetch, tree)


def _pmap_first_copy(tree: Any) -> Any:
    """Host copy of a pmap-replicated pytree: the first local device's slice."""

    def fetch(x):
        if isinstance(x, jax.Array):
            return np.asarray(x.addressable_data(0))[0] if x.ndim else np.asarray(x)
        return x

    return jax.tree_util.tree_map(fetch, tree)


def make_driver(
    name: str,
    *,
    model_apply: Callable,
    loss_fn: losses.LossFn,
    num_classes: int,
    devices: Sequence[jax.Device] | None = None,
) -> Driver:
    """Builds the pmap or mesh driver.

    Args:
      name: "pmap" or "mesh".
      model_apply: ``UNet(..., bn_axis_name="batch").apply``; it replaces the state's
        ``apply_fn`` so BatchNorm averages statistics over the device axis.
      loss_fn: (logits, labels) -> per-example losses.
      num_classes: number of classes (confusion matrix size).
      devices: the devices to use (pmap: this process' devices; mesh: all processes');
        None for all of them.

    Returns:
      A Driver.
    """
    train = functools.partial(steps.train_step, loss_fn=loss_fn, axis_name=AXIS)
    evaluate = functools.partial(
        steps.eval_step, loss_fn=loss_fn, num_classes=num_classes, axis_name=AXIS
    )
    if name == "pmap":
        return _pmap_driver(train, evaluate, model_apply, devices or jax.local_devices())
    if name == "mesh":
        return _mesh_driver(train, evaluate, model_apply, devices or jax.devices())
    raise ValueError(f"config.driver must be one of {DRIVERS}, got {name!r}")


def _pmap_driver(
    train: Callable, evaluate: Callable, model_apply: Callable, devices: Sequence[jax.Device]
) -> Driver:
    # Inputs get the sharding pmap gives its outputs (a mesh whose axis is named like the
    # pmap axis): with any other, the second step, fed the first one's output, would
    # compile again.
    sharding = NamedSharding(Mesh(np.array(devices), (AXIS,)), PartitionSpec(AXIS))

    def put(tree: Any, *, replicate: bool) -> Any:
        def place(x):
            x = np.asarray(x)
            if replicate:
                x = np.broadcast_to(x, (len(devices),) + x.shape)
            return jax.device_put(x, sharding)

        return jax.tree_util.tree_map(place, tree)

    def put_state(state: TrainState) -> Any:
        return put(state.replace(apply_fn=model_apply), replicate=True)

    def put_batch(batch: dict[str, np.ndarray]) -> Any:
        return put(batch, replicate=False)

    def get_state(state: Any) -> TrainState:
        return _pmap_first_copy(state)

    # pmap over all of this process' devices must be given devices=None: with several
    # processes that makes the device axis span every process (explicit local devices
    # would average over this host alone).
    pmap_devices = None if list(devices) == jax.local_devices() else devices
    return Driver(
        name="pmap",
        layout="pmap",
        train_step=jax.pmap(train, axis_name=AXIS, donate_argnums=(0,), devices=pmap_devices),
        eval_step=jax.pmap(evaluate, axis_name=AXIS, devices=pmap_devices),
        put_state=put_state,
        get_state=get_state,
        put_batch=put_batch,
        get_metrics=_pmap_first_copy,
    )


def _mesh_driver(
    train: Callable, evaluate: Callable, model_apply: Callable, devices: Sequence[jax.Device]
) -> Driver:
    mesh = Mesh(np.array(devices), (AXIS,))
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec(AXIS))
    # The replication check (check_vma) proves that the replicated out_specs hold: the
    # state and metrics leave the step through pmean/psum.
    mapped_train = jax.shard_map(
        train,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec(AXIS)),
        out_specs=(PartitionSpec(), PartitionSpec()),
        check_vma=True,
    )
    mapped_eval = jax.shard_map(
        evaluate,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec(AXIS)),
        out_specs=PartitionSpec(),
        check_vma=True,
    )

    def put_state(state: TrainState) -> Any:
        state = state.replace(apply_fn=model_apply)
        return jax.tree_util.tree_map(
            lambda x: jax.make_array_from_callback(np.shape(x), replicated, lambda _: x), state
        )

    def put_batch(batch: dict[str, np.ndarray]) -> Any:
        return jax.tree_util.tree_map(
            lambda x: jax.make_array_from_process_local_data(sharded, x), batch
        )

    return Driver(
        name="mesh",
        layout="mesh",
        train_step=jax.jit(mapped_train, donate_argnums=(0,)),
        eval_step=jax.jit(mapped_eval),
        put_state=put_state,
        get_state=_first_copy,
        put_batch=put_batch,
        get_metrics=_first_copy,
    )


def prefetch(
    batches: Iterator[dict[str, np.ndarray]], put_batch: Callable, size: int = 2
) -> Iterator[Any]:
    """Moves the next ``size`` batches to the devices ahead of use.

    Args:
      batches: host batches (batch k is the one of step k, so nothing else needs to travel
        with a batch for a checkpoint to record the position).
      put_batch: the driver's host-to-device transfer.
      size: number of batches in flight.

    Yields:
      The device batches, in order.
    """
    queue: collections.deque[Any] = collections.deque()
    for batch in batches:
        queue.append(put_batch(batch))
        if len(queue) > size:
            yield queue.popleft()
    yield from queue


def initialize_distributed(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    heartbeat_timeout_seconds: int = 100,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """Starts multi-host JAX when asked for explicitly or when a multi-task launch is detected.

    Explicit values win: flags, else the launcher's ``UNET_JAX_COORDINATOR_ADDRESS``,
    ``UNET_JAX_NUM_PROCESSES`` and ``UNET_JAX_PROCESS_ID`` (:mod:`unet_jax.launch`).
    Otherwise ``jax.distributed.initialize()`` is called (and auto-detects its arguments)
    only when :func:`unet_jax.launch.detect_cluster` finds a launch of several processes
    by srun, mpirun or a multi-host Cloud TPU. A single process, inside a cluster
    allocation or not, runs alone.

    Args:
      coordinator_address: "host:port" of process 0 (None: from the environment).
      num_processes: total number of processes (None: from the environment).
      process_id: this process' index (None: from the environment).
      heartbeat_timeout_seconds: a process silent this long is declared dead and the
        others exit with an error instead of waiting forever in a collective.
      environ: the environment to inspect (default ``os.environ``).

    Returns:
      "explicit", the detected cluster ("slurm", "ompi", "tpu"), or None (single process).

    Raises:
      FlagError: only some of the three explicit values are given, or one in the
        environment is not an integer.
    """
    environ = os.environ if environ is None else environ
    given = launch.explicit_start(environ)
    coordinator_address = coordinator_address or given.get("coordinator_address")
    num_processes = given.get("num_processes") if num_processes is None else num_processes
    process_id = given.get("process_id") if process_id is None else process_id
    if coordinator_address is not None or num_processes is not None or process_id is not None:
        if None in (coordinator_address, num_processes, process_id):
            raise FlagError(
                "multi-host start needs all of --coordinator_address, --num_processes and "
                f"--process_id (or {launch.COORDINATOR_ENV}, {launch.NUM_PROCESSES_ENV} and "
                f"{launch.PROCESS_ID_ENV}); got {coordinator_address!r}, {num_processes!r}, "
                f"{process_id!r}"
            )
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            heartbeat_timeout_seconds=heartbeat_timeout_seconds,
        )
        return "explicit"
    cluster = launch.detect_cluster(environ)
    if cluster is not None:
        jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout_seconds)
    return cluster
