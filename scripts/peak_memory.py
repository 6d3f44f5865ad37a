"""Peak memory of reading and scoring one hostile-but-accepted file, in the CLI and in the dashboard (issue 13).

Builds small files that declare the largest images the reader accepts (9999 x 9986 = 99.85 Mpx, just under the
100 Mpx cap; a DICOM at the 64 MiB byte cap), then for each:

- CLI: ``python -m core predict FILE --json`` in a fresh process;
- app: the Review page in Streamlit's AppTest (the page script a browser session runs, in a fresh process), one
  upload of the file, the verdict and the viewer drawn.

Each run's process tree is polled every 20 ms from ``/proc``; printed are the main process's peak resident set
(``VmHWM``, exact: the kernel keeps it) and the decoder worker's (``core.io.isolated``, a separate process that
GDCM runs in; its last polled ``VmHWM``). Target: at most 1 GB for any accepted file.

Usage (from the repository root; ``PYTHONPATH=$PWD`` in a git worktree):
    python scripts/peak_memory.py [--only png-gray,png-rgb] [--no-app] [--models models/default]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's core, not an installed one

SIDE = (9999, 9986)  # width, height: 99,850,014 pixels
APP_RUN = """
import sys
from streamlit.testing.v1 import AppTest
path, name, mime = sys.argv[1], sys.argv[2], sys.argv[3]
app = AppTest.from_file("dashboard/app.py", default_timeout=600)
app.run()
app.file_uploader(key="review_uploader").set_value([(name, open(path, "rb").read(), mime)]).run()
assert not app.exception, [e.value for e in app.exception]
shown = [e.value for e in app.error] + [m.label for m in app.metric]
print("; ".join(map(str, shown))[:300])
"""


def chest(size: tuple[int, int], mode: str = "L") -> Image.Image:
    """A reference-like film: a real-looking layout at 512 px, upscaled with nearest neighbours (compresses well)."""
    import pandas as pd

    from core.paths import default_data_dir

    data = default_data_dir()
    name = pd.read_csv(data / "manifest.csv").query("label == 'COVID-19'")["file"].iloc[0]
    return Image.open(data / "images" / name).convert(mode).resize(size, Image.Resampling.NEAREST)


KINDS = {  # kind: (file name, MIME type, how to build it)
    "png-gray": ("gray.png", "image/png", lambda path: chest(SIDE).save(path, optimize=True)),
    "png-rgb": ("rgb.png", "image/png", lambda path: chest(SIDE, "RGB").save(path, optimize=True)),
    "png-16bit": ("deep.png", "image/png",
                  lambda path: chest(SIDE).convert("I").point(lambda v: v * 257).convert("I;16").save(path)),
    "jpeg-gray": ("gray.jpg", "image/jpeg", lambda path: chest(SIDE).save(path, quality=90)),
    "jpeg-rgb": ("rgb.jpg", "image/jpeg", lambda path: chest(SIDE, "RGB").save(path, quality=90)),
    "tiff-float": ("float.tif", "image/tiff",
                   lambda path: chest(SIDE).convert("F").save(path, compression="tiff_adobe_deflate")),
    "dicom-16bit": ("cap.dcm", "application/dicom", lambda path: dicom_at_byte_cap(path)),
}


def dicom_at_byte_cap(path: Path) -> Path:
    """Uncompressed 16-bit DICOM as large as the byte cap allows (64 MiB: about 33 Mpx)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    from core.io.sources import MAX_FILE_BYTES

    side = int(np.sqrt((MAX_FILE_BYTES - 4096) / 2))
    pixels = (np.asarray(chest((side, side)), dtype=np.uint16) * 16)
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID = generate_uid()
    dataset.Modality = "DX"
    dataset.set_pixel_data(pixels, "MONOCHROME2", 12)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    path.write_bytes(buffer.getvalue())
    return path


def _vmhwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    try:
        found = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return found + [grandchild for child in found for grandchild in _children(child)]


def run_measured(command: list[str], env: dict) -> tuple[float, float, float, list[str]]:
    """(seconds, main process peak MB, largest descendant peak MB, output lines) of one run: each process's last
    polled ``VmHWM`` (the kernel's high-water mark of its own memory since its ``exec``; ``ru_maxrss`` would
    include what this script's own memory was when it forked)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    descendants: dict[int, int] = {}
    main_peak = 0
    while True:
        main_peak = max(main_peak, _vmhwm_kb(process.pid) or 0)
        for child in _children(process.pid):
            peak = _vmhwm_kb(child)
            if peak:
                descendants[child] = max(descendants.get(child, 0), peak)
        finished, status, _ = os.wait4(process.pid, os.WNOHANG)
        if finished:
            break
        time.sleep(0.02)
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = process.stdout.read().strip().splitlines()
    return (time.perf_counter() - started, main_peak / 1024, max(descendants.values(), default=0) / 1024,
            lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated file kinds (default: all)")
    parser.add_argument("--no-app", action="store_true", help="CLI only")
    parser.add_argument("--models", default=None, help="models folder (default: CXR_MODELS or models/default)")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]))
    if args.models:
        env["CXR_MODELS"] = args.models
    with tempfile.TemporaryDirectory() as folder:
        only = [kind for kind in args.only.split(",") if kind] or list(KINDS)
        print(f"{'file':<12} {'bytes':>11}  {'where':<4} {'seconds':>7} {'main MB':>8} {'worker MB':>9}  result")
        for kind in only:
            name, mime, build = KINDS[kind]
            path = Path(folder) / name
            build(path)
            runs = [("CLI", [sys.executable, "-m", "core", "predict", str(path)])]
            if not args.no_app:
                runs.append(("app", [sys.executable, "-c", APP_RUN, str(path), path.name, mime]))
            for where, command in runs:
                seconds, main_mb, worker_mb, lines = run_measured(command, env)
                last = (lines[0] if where == "CLI" else lines[-1]) if lines else ""
                print(f"{kind:<12} {path.stat().st_size:>11,}  {where:<4} {seconds:>7.1f} {main_mb:>8.0f} "
                      f"{worker_mb:>9.0f}  {last[:90]}", flush=True)


if __name__ == "__main__":
    main()
