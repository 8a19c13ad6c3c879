"""Speed of NIQE (metric.niqe) on real 512x512 faces, in seconds per image.

    python tools/benchmark_niqe.py [--data ../shared/data] [--limit 0] [--repeat 3]

The faces are CelebA-HQ's (`celeba_hq/`, 1024x1024, resized to 512x512 with cv2.INTER_AREA as the
field's scripts do) and the real low-quality faces of `lq_real/` (512x512). Decoding and resizing are
not timed; each image is scored `--repeat` times after one untimed call, and the median per image is
reported with the machine's load average. NIQE is numpy/scipy on one core (no paddle, no threads), so
on a shared machine the load average says how much the figure is inflated.
"""
import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from metric.niqe import niqe
from utils.errors import UserError, run_cli
from utils.image_io import list_images

ROOT = Path(__file__).resolve().parent.parent
SIZE = 512


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"),
                        help="folder holding celeba_hq/ and lq_real/ (default: ../shared/data)")
    parser.add_argument("--limit", type=int, default=0, help="images per folder (0 = all)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per image")
    return parser.parse_args(argv)


def load_faces(folder, limit):
    """BGR uint8 512x512 faces of a folder, as cv2.imread gives them (resized with INTER_AREA if needed)."""
    faces = []
    for path in list_images(folder)[:limit or None]:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise UserError(f"cannot decode image: {path}")
        if image.shape[:2] != (SIZE, SIZE):
            image = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        faces.append(image)
    return faces


def time_per_image(faces, repeat):
    """Median seconds of `repeat` calls, for each face; and the values (to show they are real)."""
    seconds, values = [], []
    for face in faces:
        values.append(niqe(face))   # untimed first call (page faults, the pristine model's first load)
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            niqe(face)
            runs.append(time.perf_counter() - started)
        seconds.append(statistics.median(runs))
    return seconds, values


def main(argv=None):
    args = parse_args(argv)
    if args.repeat < 1:
        raise UserError(f"--repeat must be at least 1, got {args.repeat}")
    print(f"NIQE at {SIZE}x{SIZE}, one core, median of {args.repeat} calls per image; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    all_seconds = []
    for name in ("celeba_hq", "lq_real"):
        folder = os.path.join(args.data, name)
        faces = load_faces(folder, args.limit)
        if not faces:
            raise UserError(f"no images in {folder}")
        load_before = os.getloadavg()[0]
        seconds, values = time_per_image(faces, args.repeat)
        all_seconds += seconds
        print(f"{name:10s} {len(faces):3d} images: {statistics.median(seconds):.3f} s/image median "
              f"(min {min(seconds):.3f}, max {max(seconds):.3f}); NIQE mean {np.mean(values):.4f}; "
              f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"all        {len(all_seconds):3d} images: {statistics.median(all_seconds):.3f} s/image median, "
          f"{statistics.mean(all_seconds):.3f} mean")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
