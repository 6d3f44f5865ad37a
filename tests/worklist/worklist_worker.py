"""Separate writer processes for tests/test_worklist_durability.py (run as a script).

``hold-insert URL READY N``     insert N cases (+ their "created" events) in one transaction,
                                signal READY, then sleep inside the open transaction.
``hold-update URL READY CASE``  change CASE's status and note (+ audit events) in one
                                transaction, signal READY, then sleep inside it.
``hammer URL CASE N WHO GO READY``  signal READY, wait for GO, then N times: read the case,
                                pause up to 2 ms (a reviewer's think time, so the other writer
                                gets in between) and update its status with ``expected_version``
                                = the version just read; print ``{"landed": .., "conflicts": ..}``.

The hold commands use the store's own write path (the same transaction and statements as
``add_case`` / ``update_status``); only the commit is withheld, so the test can kill -9 the
process mid-transaction.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

from core.worklist.store import ConflictError, WorklistStore, validate_new_case

HOLD_SECONDS = 600


def signal(path: str, message: str = "ready") -> None:
    """Create the file atomically, so the test never reads a half-written signal."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(message)
    os.replace(tmp, path)


def hold_insert(store: WorklistStore, ready: str, n_cases: int) -> None:
    with store._write() as conn:
        if conn.dialect.name == "sqlite":
            # A tiny page cache makes SQLite spill the uncommitted pages into the WAL file, so
            # the kill really happens with half a transaction on disk.
            conn.exec_driver_sql("PRAGMA cache_size=2")
        for index in range(n_cases):
            row = validate_new_case(
                patient_id=f"HOLD-{index:04d}", image_name=f"hold-{index}.png",
                image_sha256=f"{index:064x}", risk=0.9, flagged=True, threshold=0.5,
                per_model={"model": 0.9}, reviewer="writer", note="uncommitted " * 40)
            store._insert_case(conn, row)
        signal(ready)
        time.sleep(HOLD_SECONDS)


def hold_update(store: WorklistStore, ready: str, case_id: int) -> None:
    with store._write() as conn:
        current = store._lock_case(conn, case_id, expected=None)
        store._bump_version(conn, current, {"status": "quarantine follow-up", "reviewer": "writer"},
                            who="writer", action="status", to_status="quarantine follow-up",
                            note="uncommitted")
        current = store._lock_case(conn, case_id, expected=None)
        store._bump_version(conn, current, {"note": "uncommitted note"}, who="writer",
                            action="note", to_status=None, note="uncommitted note")
        signal(ready)
        time.sleep(HOLD_SECONDS)


def hammer(store: WorklistStore, case_id: int, n_updates: int, who: str, go: str,
           ready: str) -> dict:
    signal(ready)
    deadline = time.monotonic() + 120
    while not os.path.exists(go):  # start together with the other writer
        if time.monotonic() > deadline:
            raise TimeoutError("never told to start")
        time.sleep(0.005)
    think_time = random.Random(who)
    landed = conflicts = 0
    for _ in range(n_updates):
        case = store.get_case(case_id)
        target = ("under review" if case["status"] == "quarantine follow-up"
                  else "quarantine follow-up")
        time.sleep(think_time.uniform(0.0, 0.002))
        try:
            store.update_status(case_id, target, who=who, expected_version=case["version"])
            landed += 1
        except ConflictError:
            conflicts += 1
    return {"landed": landed, "conflicts": conflicts}


def main(argv: list[str]) -> int:
    command, url = argv[0], argv[1]
    store = WorklistStore(url)
    if command == "hold-insert":
        hold_insert(store, argv[2], int(argv[3]))
    elif command == "hold-update":
        hold_update(store, argv[2], int(argv[3]))
    elif command == "hammer":
        counts = hammer(store, int(argv[2]), int(argv[3]), argv[4], argv[5], argv[6])
        print(json.dumps(counts))
    else:
        raise SystemExit(f"unknown command {command!r}")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
