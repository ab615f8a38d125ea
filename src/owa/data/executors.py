"""Where the stages run their tasks: a local process pool, or a Ray cluster through Ray Data.

An :class:`Executor` maps a picklable function over a list of tasks and yields the results **in task order**,
whichever task finished first, so a stage's output does not depend on where or how its tasks ran:

* :class:`LocalExecutor` runs them in this process (one worker) or a process pool (``fork`` while no other thread
  runs, else ``forkserver``).
* :class:`RayExecutor` runs one Ray task per task through Ray Data (a dataset of tasks, ``map_batches`` of one
  row per block, ``preserve_order``). It joins the cluster at ``address`` (``"auto"``: the one ``ray start``
  runs on this machine) or starts a local Ray instance, on first use; an already connected Ray is used as is.

Failures, the same on both:

* An exception raised by the function comes back to the caller and is raised there, at its task's place in
  the order, with its own type and fields (stages turn expected problems into results, never exceptions).
* A Ray worker that dies (killed, out of memory, a crash in native code) is retried by Ray up to
  ``max_retries`` times; a task whose every try lost its worker is yielded as a :class:`TaskFailure`, in
  place, for the stage to report. Nothing is dropped silently and the run never waits forever on a lost task.

Ray is imported only by :class:`RayExecutor`: ``pip install 'owa-data[ray]'``.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol, TypeVar

from owa.data.errors import ExecutionError

__all__ = [
    "ENGINES",
    "Engine",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "TaskFailure",
    "check_engine",
    "create_executor",
]

logger = logging.getLogger(__name__)

Engine = Literal["local", "ray"]
"""Where a stage runs: ``"local"`` (this machine's processes) or ``"ray"`` (a Ray cluster, or a local Ray)."""
ENGINES: tuple[Engine, ...] = ("local", "ray")

_INSTALL_HINT = "pip install 'owa-data[ray]'"

T = TypeVar("T")
R = TypeVar("R")


def check_engine(engine: object, ray_address: object = None) -> Engine:
    """``engine`` if it is a valid :data:`Engine` and ``ray_address`` fits it, else ValueError saying what to pass.

    >>> check_engine("spark")
    Traceback (most recent call last):
    ...
    ValueError: Invalid engine ('spark'). Supported values are 'local', 'ray'.
    """
    if engine not in ENGINES:
        raise ValueError(f"Invalid engine ({engine!r}). Supported values are {', '.join(map(repr, ENGINES))}.")
    if ray_address is not None:
        if not isinstance(ray_address, str) or not ray_address.strip():
            raise ValueError(
                f"Invalid ray_address ({ray_address!r}). Give 'auto', a head node's host:port, a ray:// URL, "
                "or None to start a local Ray."
            )
        if engine != "ray":
            raise ValueError(f"Invalid ray_address ({ray_address!r}) with engine {engine!r}: it needs engine 'ray'.")
    return engine  # type: ignore[return-value]  # checked just above


@dataclasses.dataclass(frozen=True)
class TaskFailure:
    """A task that never returned: every try lost its Ray worker. ``index`` is its place in the task list."""

    index: int
    reason: str


class Executor(Protocol):
    """Maps ``fn`` over ``tasks``; yields each result (or :class:`TaskFailure`) in task order.

    With ``shared``, ``fn`` is called as ``fn(shared, task)``: ``shared`` is sent to the workers once, not
    with every task (a stage's input table, say).
    """

    def map(self, fn: Callable[..., R], tasks: Sequence[Any], *, shared: Any = None) -> Iterator[R | TaskFailure]: ...


class _NoShared:
    """No ``shared`` argument; pickles as the one instance below (pools that spawn workers pickle it)."""

    def __reduce__(self) -> str:
        return "_NO_SHARED"


_NO_SHARED = _NoShared()


def _call(fn: Callable[..., R], shared: Any, task: Any) -> R:
    return fn(task) if shared is _NO_SHARED else fn(shared, task)


# --------------------------------------------------------------------------------------------------
# Local: this process, or a fork pool
# --------------------------------------------------------------------------------------------------

_POOL_FN: Callable[..., Any] | None = None
_POOL_SHARED: Any = _NO_SHARED


class LocalExecutor:
    """Tasks in this process (``workers`` 1, or a single task) or in a pool of ``workers`` processes."""

    def __init__(self, workers: int = 1) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"Invalid workers ({workers!r}). Use a positive process count.")
        self.workers = workers

    def map(self, fn: Callable[..., R], tasks: Sequence[Any], *, shared: Any = _NO_SHARED) -> Iterator[R]:
        if self.workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                yield _call(fn, shared, task)
            return
        context = multiprocessing.get_context(_start_method())
        with context.Pool(min(self.workers, len(tasks)), initializer=_init_pool_worker, initargs=(fn, shared)) as pool:
            yield from pool.imap(_pool_call, tasks)


def _start_method() -> str:
    """fork while this process runs no other thread: it starts in milliseconds, works from notebooks and
    ``python -c``, and ``shared`` is inherited, not pickled. Forking a process with other threads (a server or
    decoder thread, say) can copy a lock that one of them holds and hang the child, so then forkserver; spawn off
    POSIX. Both pickle ``shared`` and need the caller's ``__main__`` guard."""
    if os.name != "posix":
        return "spawn"
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    method = "forkserver" if others else "fork"
    logger.debug("Local pool start method: %s (other threads: %s)", method, others)
    return method


def _init_pool_worker(fn: Callable[..., Any], shared: Any) -> None:
    global _POOL_FN, _POOL_SHARED
    _POOL_FN, _POOL_SHARED = fn, shared
    # Interrupts are the parent's to handle: it terminates the pool and removes the partial output.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pool_call(task: Any) -> Any:
    assert _POOL_FN is not None, "pool worker not initialized"
    return _call(_POOL_FN, _POOL_SHARED, task)


# --------------------------------------------------------------------------------------------------
# Ray: one Ray Data task per task
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Raised:
    """An exception the function raised in a Ray worker, carried back as a value to be raised in order."""

    error: BaseException


class _RunTasks:
    """The Ray Data batch function: each row is ``(index, pickled task)``; each output row ``(index, pickled
    result)``. Exceptions are returned, not raised: Ray would wrap them, and Ray Data retry or drop them."""

    def __init__(self, fn: Callable[..., Any], shared_ref: Any) -> None:
        self.fn = fn
        self.shared_ref = shared_ref

    def __call__(self, batch: Any) -> Any:  # pa.Table → pa.Table
        import pyarrow as pa

        shared = _NO_SHARED
        if self.shared_ref is not None:
            import ray

            shared = ray.get(self.shared_ref)  # zero-copy from the node's object store
        results = []
        for payload in batch.column("task").to_pylist():
            try:
                value: Any = _call(self.fn, shared, pickle.loads(payload))
            except Exception as e:
                value = _Raised(e)
            try:
                results.append(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
            except Exception as e:  # an unpicklable exception or result: keep its type name and message
                if isinstance(value, _Raised):
                    error = ExecutionError(f"Task raised {type(value.error).__name__}: {value.error}")
                else:
                    error = ExecutionError(f"Task result cannot be pickled: {type(e).__name__}: {e}")
                results.append(pickle.dumps(_Raised(error)))
        return pa.table({"index": batch.column("index"), "result": pa.array(results, pa.large_binary())})


class RayExecutor:
    """Tasks as Ray tasks through Ray Data, on the cluster at ``address``.

    Args:
        address: ``None`` starts a local Ray instance (with ``workers`` CPUs when set); ``"auto"`` joins the
            cluster started with ``ray start`` on this machine; ``"host:port"`` or ``"ray://host:10001"`` joins
            that one. An already connected Ray (``ray.init`` called by the application) is used as is.
        workers: the most tasks at once; 0 means as many as the cluster has CPUs.
        max_retries: tries after the first when a task's worker dies. Exceptions are never retried.

    Raises (on first use):
        ImportError: Ray Data is not installed.
        ExecutionError: the cluster cannot be reached.
    """

    def __init__(self, address: str | None = None, *, workers: int = 0, max_retries: int = 3) -> None:
        check_engine("ray", address)
        if not isinstance(workers, int) or workers < 0:
            raise ValueError(f"Invalid workers ({workers!r}). Use 0 (all the cluster's CPUs) or a positive count.")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"Invalid max_retries ({max_retries!r}). Use 0 or a positive count.")
        self.address = address
        self.workers = workers
        self.max_retries = max_retries

    def connect(self) -> float:
        """Connect to (or start) Ray unless already connected; return the seconds it took (0.0 when connected)."""
        try:
            import ray
            import ray.data  # the engine needs Ray Data, not only Ray core
        except ImportError as e:
            raise ImportError(f"engine='ray' needs Ray Data. Install it with: {_INSTALL_HINT}") from e
        if ray.is_initialized():
            return 0.0
        started = time.perf_counter()
        _check_reachable(self.address)
        options: dict[str, Any] = {"address": self.address, "include_dashboard": False}
        if self.address is None and self.workers:
            options["num_cpus"] = self.workers
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ExecutionError(
                f"Cannot connect to Ray ({str(e).rstrip('.')}). Start a cluster with `ray start --head`, or pass no "
                "address to start a local Ray",
                address=self.address,
            ) from e
        seconds = time.perf_counter() - started
        logger.info("Ray %s in %.1f s: %s", "started" if self.address is None else "joined", seconds, _resources())
        return seconds

    def map(self, fn: Callable[..., R], tasks: Sequence[Any], *, shared: Any = _NO_SHARED) -> Iterator[R | TaskFailure]:
        if not tasks:
            return
        self.connect()
        import pyarrow as pa
        import ray
        import ray.data

        shared_ref = None if shared is _NO_SHARED else ray.put(shared)
        items = pa.table(
            {
                "index": pa.array(range(len(tasks)), pa.int64()),
                "task": pa.array([pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL) for t in tasks], pa.large_binary()),
            }
        )
        # Ray 2.60 deprecates **ray_remote_args (it has no named max_retries) and warns about its own context.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            dataset = ray.data.from_arrow([items.slice(i, 1) for i in range(len(tasks))])  # one block per task
            context = dataset.context  # this dataset's own copy: the application's DataContext is left alone
            context.execution_options.preserve_order = True
            context.max_errored_blocks = -1  # a task that lost every worker is reported (TaskFailure), not fatal
            context.enable_progress_bars = False  # the library never prints; callers count results for progress
            mapped = dataset.map_batches(
                _RunTasks(fn, shared_ref),
                batch_format="pyarrow",
                batch_size=None,  # the whole block: one task
                num_cpus=1,
                compute=ray.data.TaskPoolStrategy(size=min(self.workers, len(tasks)) or None),
                max_retries=self.max_retries,
                retry_exceptions=False,
            )
        expected = 0
        for batch in mapped.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0):
            for index, payload in zip(
                batch.column("index").to_pylist(), batch.column("result").to_pylist(), strict=True
            ):
                yield from self._lost(expected, index)
                expected = index + 1
                value = pickle.loads(payload)
                if isinstance(value, _Raised):
                    raise value.error
                yield value
        yield from self._lost(expected, len(tasks))

    def _lost(self, start: int, stop: int) -> Iterator[TaskFailure]:
        for index in range(start, stop):
            reason = (
                f"its Ray worker died on each of {self.max_retries + 1} tries (killed, out of memory, or a crash in "
                "native code); Ray's worker logs (/tmp/ray/session_latest/logs) have the cause"
            )
            logger.error("Task %d failed: %s", index, reason)
            yield TaskFailure(index, reason)


# Ray itself keeps retrying an unreachable head node for minutes; a plain TCP connect says so at once.
_CONNECT_TIMEOUT_S = 10.0


def _check_reachable(address: str | None) -> None:
    """ExecutionError unless ``host:port`` accepts a connection (``auto``, ``ray://`` and None are Ray's to check)."""
    if address is None or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=_CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as e:
        raise ExecutionError(
            f"Cannot reach the Ray head node ({e}). Is `ray start --head` running there, and is the address "
            "HOST:PORT (default port 6379)?",
            address=address,
        ) from e


def _resources() -> str:
    import ray

    resources = ray.cluster_resources()
    return f"{len(ray.nodes())} node(s), {resources.get('CPU', 0):g} CPUs"


def create_executor(engine: Engine, *, workers: int, ray_address: str | None = None) -> Executor:
    """The executor for ``engine``: ``LocalExecutor(workers)``, or ``RayExecutor(ray_address, workers=workers)``.

    ``workers`` 0 means one per core (local) or all the cluster's CPUs (Ray).
    """
    check_engine(engine, ray_address)
    if engine == "ray":
        return RayExecutor(ray_address, workers=workers)
    return LocalExecutor(workers or os.cpu_count() or 1)
