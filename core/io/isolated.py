"""Run a native decoder that can kill the process in a separate worker process, so only the worker dies.

GDCM (python-gdcm) throws C++ exceptions that its Python binding does not catch: a damaged JPEG stream makes it call
``std::terminate`` and the whole process aborts — the command line mid-batch, or the dashboard's server for every
user. Everything that decodes untrusted bytes with GDCM therefore goes through :func:`run_isolated`: one persistent
worker (``python -c``, started on first use, restarted after a crash), one call at a time, a time limit per call.
The worker's standard error is its own, so it may redirect it freely to read what a decoder printed.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import core

CALL_TIMEOUT_S = 120.0
"""Longest a call may take (a 100-Mpx JPEG decodes in a few seconds); the worker is killed after it."""


class WorkerCrashed(RuntimeError):
    """The worker died (or had to be killed) while running the call: the input made the decoder abort or hang."""


_LOCK = threading.Lock()
_worker: subprocess.Popen | None = None


def run_isolated(function: Callable[..., Any], *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
    """``function(*args)`` in the worker process; its result, or the exception it raised, comes back.

    ``function`` must be importable by name (a module-level function of ``core``); arguments and result are
    pickled. Raises :class:`WorkerCrashed` when the worker dies or exceeds ``timeout`` seconds.
    """
    global _worker
    with _LOCK:
        if _worker is None or _worker.poll() is not None:
            _worker = _start_worker()
        worker = _worker
        try:
            _send(worker.stdin, (function, args))
            reply = _receive(worker.stdout, worker, timeout)
        except (OSError, EOFError, TimeoutError) as err:
            worker.kill()
            worker.wait()
            _worker = None
            reason = f"took longer than {timeout:.0f} s" if isinstance(err, TimeoutError) else \
                f"stopped (exit status {worker.returncode})"
            raise WorkerCrashed(f"the decoder process {reason}") from err
    ok, value = reply
    if ok:
        return value
    raise value


def _start_worker() -> subprocess.Popen:
    # the same copy of `core` as this process (a git worktree, an editable install ...), unbuffered binary pipes
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(core.__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", "from core.io.isolated import serve; serve()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=environment, bufsize=0)


def _send(stream: BinaryIO, message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">Q", len(payload)) + payload)
    stream.flush()


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            raise EOFError("the worker closed its output")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive(stream: BinaryIO, worker: subprocess.Popen, timeout: float) -> Any:
    """One reply from the worker, waiting at most ``timeout`` seconds for it to begin."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError
    size = struct.unpack(">Q", _read_exactly(stream, 8))[0]
    return pickle.loads(_read_exactly(stream, size))  # our own worker's reply: plain data and arrays


def serve() -> None:
    """The worker's loop: read a call, run it, write back ``(True, result)`` or ``(False, exception)``."""
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # nothing a decoder prints (C or Python) may corrupt the reply stream
    sys.stdout = sys.stderr
    while True:
        try:
            size = struct.unpack(">Q", _read_exactly(requests, 8))[0]
        except EOFError:
            return
        function, args = pickle.loads(_read_exactly(requests, size))
        try:
            reply = (True, function(*args))
        except Exception as err:  # sent back and raised in the caller
            reply = (False, err)
        _send(replies, reply)
