"""Where a batch's chunks are fitted: threads, processes (loky) or a Dask cluster.

Every backend runs the same :meth:`ChunkFitter.fit_chunk` on the same chunks
and yields each chunk's tables as it finishes, so the results do not depend
on the backend or the number of workers.  At most a few chunks per worker are
in flight at once (on Dask, a few tasks of consecutive chunks: :func:`task_groups`):
the responses of a chunk are read (a sparse block densified alone) only when it
is sent.
"""

from __future__ import annotations

import math
import os
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, ThreadPoolExecutor, wait
from itertools import pairwise
from typing import Any

from ..errors import ArgumentError, GlmmWarning
from .responses import Responses, dense_columns
from .rows import ChunkFitter, ChunkTables

BACKENDS = ("threads", "processes", "dask")
IN_FLIGHT_PER_WORKER = 2
TASKS_PER_WORKER = 8
TASK_VALUES_MAX = 2 ** 22        # 32 MB of float64 responses per Dask task

Chunks = list[tuple[int, int, int]]     # (index, first column, stop)


def default_jobs() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def run(backend: str, fitter: ChunkFitter, responses: Responses, chunks: Chunks,
        n_jobs: int | None, client: Any) -> Iterator[ChunkTables]:
    """Fit the chunks on a backend, yielding each chunk's tables when it is done."""
    jobs = n_jobs or default_jobs()
    if backend == "threads":
        if jobs == 1 or len(chunks) == 1:
            for k, a, b in chunks:
                yield fitter.fit_chunk(k, responses.names[a:b],
                                       dense_columns(responses.block(a, b)))
            return
        with ThreadPoolExecutor(jobs, thread_name_prefix="glmmcore-batch") as pool:
            yield from _bounded(pool, jobs, chunks, lambda k, a, b: pool.submit(
                _thread_chunk, fitter, responses, k, a, b))
    elif backend == "processes":
        executor = _process_executor(jobs, fitter)
        try:
            yield from _bounded(executor, jobs, chunks, lambda k, a, b: executor.submit(
                _process_chunk, k, responses.names[a:b], responses.block(a, b)))
        finally:
            executor.shutdown(wait=True, kill_workers=True)
    else:
        yield from _run_dask(fitter, responses, chunks, client)


def _bounded(executor: Executor, jobs: int, chunks: Chunks, submit: Any
             ) -> Iterator[ChunkTables]:
    """Submit chunks in order keeping a few per worker in flight; yield as they finish."""
    pending = list(reversed(chunks))
    running: set = set()
    try:
        while pending or running:
            while pending and len(running) < IN_FLIGHT_PER_WORKER * jobs:
                running.add(submit(*pending.pop()))
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        for future in running:
            future.cancel()


def _thread_chunk(fitter: ChunkFitter, responses: Responses, k: int, a: int, b: int
                  ) -> ChunkTables:
    return fitter.fit_chunk(k, responses.names[a:b], dense_columns(responses.block(a, b)))


# -- processes ----------------------------------------------------------------------
# Each worker process holds the batch's fitter from its initializer: the models are
# sent once per process, not with every chunk.
_PROCESS_FITTER: dict[str, ChunkFitter] = {}


def _process_executor(jobs: int, fitter: ChunkFitter) -> Any:
    try:
        from joblib.externals.loky import ProcessPoolExecutor
    except ImportError:
        raise ImportError('the "processes" backend needs joblib: pip install '
                          '"glmmcore[processes]"') from None
    return ProcessPoolExecutor(max_workers=jobs, initializer=_install_fitter,
                               initargs=(fitter,))


def _install_fitter(fitter: ChunkFitter) -> None:
    _PROCESS_FITTER["fitter"] = fitter


def _process_chunk(k: int, names: list[str], block: Any) -> ChunkTables:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GlmmWarning)
        return _PROCESS_FITTER["fitter"].fit_chunk(k, names, dense_columns(block))


# -- dask ---------------------------------------------------------------------------
def dask_client(client: Any) -> Any:
    """The Dask client given, or the current one; a clear error without either."""
    try:
        import distributed
    except ImportError:
        raise ImportError('the "dask" backend needs dask.distributed: pip install '
                          '"glmmcore[dask]"') from None
    if client is not None:
        return client
    try:
        return distributed.get_client()
    except ValueError:
        raise ArgumentError('backend="dask" needs a dask.distributed Client: pass '
                            "client=Client(...) or create one first") from None


def _run_dask(fitter: ChunkFitter, responses: Responses, chunks: Chunks, client: Any
              ) -> Iterator[ChunkTables]:
    from distributed import as_completed
    client = dask_client(client)
    # the models go to every worker once; tasks refer to them by their future
    shared = client.scatter(fitter, broadcast=True, hash=False)
    batch = uuid.uuid4().hex[:12]
    workers = max(sum(client.nthreads().values()), 1)
    pending = list(reversed(task_groups(chunks, workers, responses.matrix.shape[0])))
    queue = as_completed()
    futures: list = []

    def submit() -> None:
        group = pending.pop()
        parts = [(k, responses.names[a:b], responses.block(a, b)) for k, a, b in group]
        future = client.submit(_dask_chunks, shared, parts,
                               key=f"glmmcore-chunks-{batch}-{group[0][0]}")
        futures.append(future)
        queue.add(future)

    try:
        while pending and queue.count() < IN_FLIGHT_PER_WORKER * workers:
            submit()
        for future in queue:
            tables = future.result()
            future.release()
            if pending:
                submit()
            yield from tables
    finally:
        client.cancel([f for f in futures if not f.done()])
        shared.release()


def task_groups(chunks: Chunks, workers: int, nrows: int) -> list[Chunks]:
    """The chunks cut into consecutive groups, one Dask task each.

    A task costs the client, the scheduler and the worker some milliseconds of
    their cores (the graph, a round trip, the result's transfer) whatever its size:
    about :data:`TASKS_PER_WORKER` tasks per worker thread keep that small against
    the fits and still balance the workers.  A task's responses stay under
    :data:`TASK_VALUES_MAX` values (a sparse block densified on the worker).
    """
    if not chunks:
        return []
    per_chunk = nrows * max(b - a for _, a, b in chunks)
    most = max(1, TASK_VALUES_MAX // max(per_chunk, 1))          # chunks a task may hold
    count = max(min(len(chunks), TASKS_PER_WORKER * workers), math.ceil(len(chunks) / most))
    bounds = [len(chunks) * i // count for i in range(count + 1)]  # sizes differ by one at most
    return [chunks[a:b] for a, b in pairwise(bounds)]


def _dask_chunks(fitter: ChunkFitter, parts: list[tuple[int, list[str], Any]]
                 ) -> list[ChunkTables]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GlmmWarning)
        return [fitter.fit_chunk(k, names, dense_columns(block)) for k, names, block in parts]
