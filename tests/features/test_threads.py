"""Per-image work on threads: same results, same order, no nested pools."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from core.features.threads import available_threads, map_threaded


def test_results_keep_the_order_of_the_items_and_equal_a_loop():
    items = list(range(20))
    assert map_threaded(lambda i: i * i, items, n_threads=2) == [i * i for i in items]
    assert map_threaded(lambda i: i, [], n_threads=2) == []


def test_two_threads_are_used_when_asked_and_one_when_blas_has_one():
    def thread_of(_):
        time.sleep(0.02)  # long enough that one thread cannot take every item
        return threading.get_ident()

    assert len(set(map_threaded(thread_of, range(8), n_threads=2))) == 2
    with threadpool_limits(limits=1, user_api="blas"):
        assert available_threads() == 1
        assert set(map_threaded(thread_of, range(3))) == {threading.get_ident()}


def test_inside_a_thread_blas_has_one_thread_so_nested_maps_run_serially():
    with threadpool_limits(limits=2, user_api="blas"):
        assert available_threads() == 2
        inner = map_threaded(lambda _: available_threads(), range(4))
        assert inner == [1, 1, 1, 1]
        assert available_threads() == 2  # restored afterwards


def test_an_exception_in_one_item_reaches_the_caller():
    def fail_on_three(i):
        if i == 3:
            raise ValueError("item 3 is bad")
        return i

    with pytest.raises(ValueError, match="item 3 is bad"):
        map_threaded(fail_on_three, range(6), n_threads=2)


def test_numpy_work_gives_identical_values_on_threads():
    rng = np.random.default_rng(0)
    matrices = [rng.normal(size=(64, 64)).astype(np.float32) for _ in range(6)]
    serial = [m @ m.T for m in matrices]
    threaded = map_threaded(lambda m: m @ m.T, matrices, n_threads=2)
    for a, b in zip(serial, threaded):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_workers_that_set_their_own_limits_leave_the_process_limits_as_they_were():
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime, so it is among the limits)
    from threadpoolctl import threadpool_info

    def limits() -> dict:
        return {(pool["user_api"], pool["filepath"]): pool["num_threads"] for pool in threadpool_info()}

    before = limits()

    def work(_):
        with threadpool_limits(limits=1):  # as TriageModel.predict_image does
            time.sleep(0.005)

    map_threaded(work, range(10), n_threads=2)
    assert limits() == before


def test_single_threaded_limits_blas_and_restores_it():
    from core.features.threads import single_threaded

    with threadpool_limits(limits=2, user_api="blas"):
        with single_threaded():
            assert available_threads() == 1
        assert available_threads() == 2


_OVERLAP_SCRIPT = """
import threading
import numpy, sklearn.ensemble  # BLAS and OpenMP loaded, as in the app
from core.features.threads import available_threads, single_threaded

before = available_threads()
other_open, main_open, other_closed = threading.Event(), threading.Event(), threading.Event()

def other():
    with single_threaded():
        other_open.set()
        main_open.wait(5)
    other_closed.set()

thread = threading.Thread(target=other)
thread.start()
other_open.wait(5)
with single_threaded():
    main_open.set()
    other_closed.wait(5)
    during = available_threads()
thread.join(10)
print(before, during, available_threads())
"""


def test_overlapping_single_threaded_contexts_in_two_threads_restore_the_limits_of_before():
    """A thread opens, the main thread opens, the thread closes, the main thread closes (two sessions predicting at
    once): the main thread stays limited after the other closes, and the process ends as it began. Run in a fresh
    process: once the main thread has set and restored a limit (as the other tests here do), this OpenBLAS ignores
    limits set from other threads."""
    import os
    import subprocess
    import sys

    from core.paths import REPO_ROOT

    # Without the thread-count variables other tests' libraries may have set in this process (loky, Dask do).
    env = {name: value for name, value in os.environ.items() if not name.endswith("_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", _OVERLAP_SCRIPT], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    before, during, after = map(int, result.stdout.split())
    if before < 2:
        pytest.skip("one BLAS thread on this machine: nothing to limit")
    assert (during, after) == (1, before)
