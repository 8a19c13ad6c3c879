"""What a researcher watches during training: a progress bar, `train.log`, VisualDL scalars and
sample grids (also as PNG under `samples/`), and Paddle's throughput figures (avg_reader_cost,
avg_batch_cost, ips). Only the main process writes."""
import logging
import os
import time

import numpy as np

from utils.image_io import write_image
from utils.imaging import to_images


class _TqdmHandler(logging.Handler):
    """Console lines printed above the progress bar instead of through it."""

    def emit(self, record):
        from tqdm import tqdm
        tqdm.write(self.format(record))


def setup_logging(output_dir, is_main):
    logger = logging.getLogger("gpen")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    logger.propagate = False
    if is_main:
        os.makedirs(output_dir, exist_ok=True)
        handler = logging.FileHandler(os.path.join(output_dir, "train.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        console = _TqdmHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
    else:
        logger.addHandler(logging.NullHandler())
    return logger


def sample_grid(degraded, restored, target):
    """One row per face: degraded | restored | target."""
    rows = [np.concatenate([d, r, t], axis=1) for d, r, t in zip(to_images(degraded), to_images(restored),
                                                                 to_images(target))]
    return np.concatenate(rows, axis=0)


class Throughput:
    """Reader and batch time averaged over a log interval, as Paddle's model suites print them."""

    def __init__(self):
        self.reset()
        self.mark = time.perf_counter()

    def reset(self):
        self.reader = self.batch = 0.0
        self.steps = self.samples = 0

    def data_ready(self):
        now = time.perf_counter()
        self.reader += now - self.mark

    def step_done(self, samples):
        now = time.perf_counter()
        self.batch += now - self.mark
        self.steps += 1
        self.samples += samples
        self.mark = now

    def report(self):
        steps = max(self.steps, 1)
        values = dict(avg_reader_cost=self.reader / steps, avg_batch_cost=self.batch / steps,
                      ips=self.samples / max(self.batch, 1e-9))
        self.reset()
        return values


class VisualDL:
    """VisualDL scalars and images under <output_dir>/vdl; nothing on other processes."""

    def __init__(self, output_dir, enabled):
        self.writer = None
        if enabled:
            from visualdl import LogWriter
            self.writer = LogWriter(logdir=os.path.join(output_dir, "vdl"))

    def scalars(self, values, step, prefix="train"):
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(tag=f"{prefix}/{name}", value=float(value), step=step)

    def image(self, tag, image, step):
        if self.writer is not None:
            self.writer.add_image(tag=tag, img=image, step=step, dataformats="HWC")

    def close(self):
        if self.writer is not None:
            self.writer.close()


def save_samples(output_dir, iteration, grid):
    path = os.path.join(output_dir, "samples", f"{iteration:06d}.png")
    write_image(path, grid)
    return path
