"""Per-image work spread over the cores this process may use, with threads.

Finding the lungs, the texture features and the SqueezeNet forward pass spend most of their time in numpy, SciPy and
scikit-image code that releases the GIL, so two images processed in two threads take about 0.6× the time of one
after the other (measured: radiomic features incl. lung fields 81 → 54 ms per image on 2 cores). The number of
threads is the number of BLAS threads this process may use: all cores in a plain process, one in a joblib worker
that was given one core (joblib limits BLAS there), so processes and threads never oversubscribe the machine.
Inside the threads BLAS and OpenMP run single-threaded, and a threaded map called from inside one runs serially.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from threadpoolctl import ThreadpoolController

Item = TypeVar("Item")
Result = TypeVar("Result")


@functools.cache
def _controller() -> ThreadpoolController:
    """The process's thread pools (BLAS, OpenMP), found once: scanning the loaded libraries takes about 5 ms with
    SciPy and scikit-learn loaded, a sixth of a film's feature time. A library loaded after the first call is not
    seen (it would only run on its own default threads)."""
    return ThreadpoolController()


def available_threads() -> int:
    """Threads this process may use for per-image work: the BLAS thread limit in force (at least 1)."""
    counts = [pool["num_threads"] for pool in _controller().info() if pool.get("user_api") == "blas"]
    return max(min(counts, default=1), 1)


_limit_lock = threading.Lock()
_limit_depth = 0
_limiter = None


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Context in which BLAS and OpenMP run on one thread, for work too small to share or already spread over
    processes or threads.

    Process-wide and counted: the first context to open (in any thread) records the limits and sets one thread, the
    last to close restores what the first recorded. Plain ``threadpool_limits`` contexts that overlap in two threads
    (two Streamlit sessions predicting at once) restore in the wrong order and can leave the process on one thread.
    Limits only change speed, never values; note that the bundled OpenBLAS (0.3.31) ignores a limit set from a
    thread other than the main one after the main thread has set and restored one.
    """
    global _limit_depth, _limiter
    with _limit_lock:
        if _limit_depth == 0:
            _limiter = _controller().limit(limits=1)
        _limit_depth += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_depth -= 1
            if _limit_depth == 0:
                _limiter.restore_original_limits()
                _limiter = None


def map_threaded(function: Callable[[Item], Result], items: Iterable[Item],
                 n_threads: int | None = None) -> list[Result]:
    """``[function(item) for item in items]``, computed on up to ``n_threads`` threads.

    Parameters
    ----------
    function : callable
        Must be safe to run in several threads at once (no shared mutable state).
    items : iterable
    n_threads : int, optional
        Default :func:`available_threads`. With 1 thread, or a single item, runs in the calling thread.

    Returns
    -------
    list
        Results in the order of ``items``. The first exception raised by ``function`` propagates.
    """
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    n_threads = min(available_threads() if n_threads is None else int(n_threads), len(items))
    if n_threads <= 1:
        return [function(item) for item in items]
    # One BLAS (and OpenMP) thread per worker thread: the parallelism is over images; the limit also makes a threaded
    # map called from inside a worker run serially.
    with single_threaded(), ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(function, items))
