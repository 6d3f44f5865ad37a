"""Worklist durability: a writer killed mid-transaction, and two processes racing on one case.

Each test runs on SQLite (file in tmp_path) and, when ``CXR_TEST_POSTGRES_URL`` is set, on
PostgreSQL in a fresh schema (``-m postgres`` selects only those). The writers are real separate
processes (tests/worklist_worker.py) so that kill -9 and lock contention are real.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pg_server import worklist_url  # noqa: F401  (fixture: SQLite, and PostgreSQL if configured)
from sqlalchemy import make_url

from core.worklist.store import WorklistStore

WORKER = Path(__file__).with_name("worklist_worker.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
UPDATES_PER_PROCESS = 150
HELD_CASES = 200


def start_worker(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, str(WORKER), *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_signal(path: Path, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            _, errors = process.communicate()
            pytest.fail(f"worker exited with {process.returncode} before signalling:\n{errors}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"worker did not signal {path.name} within {timeout_s} s")
        time.sleep(0.02)


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" else None


def committed_case(store: WorklistStore) -> int:
    case_id = store.add_case(patient_id="KEEP-1", image_name="keep.png", image_sha256="e" * 64,
                             risk=0.77, flagged=True, threshold=0.5, per_model={"model": 0.77},
                             reviewer="triage-bot", note="committed before the crash")
    store.update_status(case_id, "under review", who="dr.ada", expected_version=1)
    return case_id


@pytest.mark.parametrize("held_write", ["insert", "update"])
def test_kill_9_mid_transaction_leaves_no_partial_record(worklist_url: str,  # noqa: F811
                                                         tmp_path: Path, held_write: str) -> None:
    with WorklistStore(worklist_url) as store:
        kept = committed_case(store)
        case_before, cases_before = store.get_case(kept), store.cases()
        trail_before = store.audit_trail()
    db_path = sqlite_path(worklist_url)
    wal = db_path.with_name(db_path.name + "-wal") if db_path else None
    wal_size_before = wal.stat().st_size if wal and wal.exists() else 0

    ready = tmp_path / "writer-ready"
    if held_write == "insert":
        writer = start_worker("hold-insert", worklist_url, str(ready), str(HELD_CASES))
    else:
        writer = start_worker("hold-update", worklist_url, str(ready), str(kept))
    try:
        wait_for_signal(ready, writer)
        if wal is not None and held_write == "insert":
            # The uncommitted cases really reached the disk (WAL frames without a commit).
            assert wal.stat().st_size > wal_size_before + 100_000
        with WorklistStore(worklist_url) as reader:  # meanwhile, nobody sees the open write
            pd.testing.assert_frame_equal(reader.cases(), cases_before)
            pd.testing.assert_frame_equal(reader.audit_trail(), trail_before)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        assert writer.returncode == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()

    if db_path is not None:
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        raw.close()
    with WorklistStore(worklist_url) as store:
        assert store.get_case(kept) == case_before
        pd.testing.assert_frame_equal(store.cases(), cases_before)
        pd.testing.assert_frame_equal(store.audit_trail(), trail_before)
        # No lock or half transaction is left behind: the next writer goes straight through.
        store.update_status(kept, "cleared", who="dr.bo", expected_version=case_before["version"])
        assert store.add_case(patient_id="NEXT-1", image_name="n.png", image_sha256="f" * 64,
                              risk=0.3, flagged=False, threshold=0.5, per_model={"m": 0.3}) > kept
        assert len(store.audit_trail(kept)) == case_before["version"] + 1


def test_two_processes_racing_on_one_case_lose_no_update(worklist_url: str,  # noqa: F811
                                                          tmp_path: Path) -> None:
    with WorklistStore(worklist_url) as store:
        case_id = store.add_case(patient_id="RACE-1", image_name="race.png",
                                 image_sha256="d" * 64, risk=0.9, flagged=True, threshold=0.5,
                                 per_model={"model": 0.9})
    go = tmp_path / "go"
    writers = {who: start_worker("hammer", worklist_url, str(case_id), str(UPDATES_PER_PROCESS),
                                 who, str(go), str(tmp_path / f"ready-{who}"))
               for who in ("writer-a", "writer-b")}
    try:
        for who, process in writers.items():
            wait_for_signal(tmp_path / f"ready-{who}", process)
        started = time.perf_counter()
        go.touch()
        counts = {}
        for who, process in writers.items():
            output, errors = process.communicate(timeout=300)
            assert process.returncode == 0, errors
            counts[who] = json.loads(output.strip().splitlines()[-1])
        elapsed = time.perf_counter() - started
    finally:
        for process in writers.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    with WorklistStore(worklist_url) as store:
        case = store.get_case(case_id)
        trail = store.audit_trail(case_id)
    landed = sum(count["landed"] for count in counts.values())
    conflicts = sum(count["conflicts"] for count in counts.values())
    assert conflicts > 0, "the two writers never overlapped, so the race was not exercised"
    for count in counts.values():  # every attempt either landed or was told it conflicted
        assert count["landed"] + count["conflicts"] == UPDATES_PER_PROCESS
    status_events = trail[trail["action"] == "status"]
    assert case["version"] - 1 == landed == len(status_events)
    for who, count in counts.items():
        assert (status_events["who"] == who).sum() == count["landed"]
    # Each change starts from the state the previous one left: no update was overwritten.
    assert list(trail["case_version"]) == list(range(1, landed + 2))
    assert list(status_events["from_status"].iloc[1:]) == list(status_events["to_status"].iloc[:-1])
    assert case["status"] == status_events["to_status"].iloc[-1]
    print(f"\n[{make_url(worklist_url).get_backend_name()}] {2 * UPDATES_PER_PROCESS} attempts: "
          f"{landed} landed, {conflicts} ConflictError, final version {case['version']}, "
          f"{len(status_events)} status events, {elapsed:.2f} s; per writer {counts}")
