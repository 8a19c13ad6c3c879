"""Face folders as Paddle datasets, and the data loader that feeds training and evaluation.

FaceDataset(root, size, ...)[key] reads one HQ face (any png/jpg/jpeg/bmp/webp under `root`, nested
folders included, sorted by path), resizes it to size x size and returns float32 RGB CHW in [-1, 1]:

* mode 'device': the HQ image only; the LQ is made on the training device (`DeviceDegradation`);
* mode 'cpu': (lq, hq), degraded here, in the loader's worker (`degradations.degrade`) — the order of the
  authors' FaceDataset, which returns (degraded, real).

Randomness is keyed, not streamed: the degradation of item i in epoch e depends only on (seed, e, i)
(training) or on (test_seed, i) (`test=True`), so a run repeats exactly whatever the number of workers,
the batch size or the ranks that share the data. `build_loader` makes the sampler pass the epoch along
with each index ((epoch, index) keys).

An unreadable file is skipped: the item becomes the next readable file in sorted order (deterministic),
one warning names the file, and `summary()` counts them (workers share the record).
"""
import logging
import multiprocessing
import os

import cv2
import numpy as np
import paddle
from paddle.io import DataLoader, Dataset, DistributedBatchSampler

from data_loader.degradations import (TRAIN_STREAM, DegradationSampler, as_float_image, degrade,
                                      degrade_for_test, keyed_rngs, to_chw)
from utils.errors import UserError
from utils.image_io import IMAGE_EXTENSIONS, list_images, read_image
from utils.imaging import INTERPOLATIONS

logger = logging.getLogger(__name__)

MODES = ("cpu", "device")


def resolve_mode(degrade_on, device):
    """DataConfig.degrade_on ('auto' | 'cpu' | 'device') for a Paddle device string -> 'cpu' | 'device'."""
    if degrade_on == "auto":
        return "device" if str(device).startswith("gpu") else "cpu"
    if degrade_on not in MODES:
        raise UserError(f"config key data.degrade_on: expected auto, cpu or device, got {degrade_on!r}")
    return degrade_on


class FaceDataset(Dataset):
    """HQ faces of a folder, optionally with their degraded (LQ) versions.

    root: folder of images (searched recursively). size: output side in pixels.
    interpolation: 'area' | 'nearest' | 'bilinear' | 'bicubic' (DataConfig.interpolation).
    mode: 'cpu' -> items are (lq, hq); 'device' -> items are hq.
    degradation: DegradationConfig (or a DegradationSampler); used in 'cpu' mode.
    seed: training seed (cfg.train.seed) or, with test=True, the test seed (cfg.data.test_seed).
    test: repeatable test-time degradation (`degrade_for_test`, no flip), independent of the epoch.
    fast: the CPU executor's fast blur (equal to the authors' filter2D within ~1e-6).
    """

    def __init__(self, root, size, interpolation="area", mode="cpu", degradation=None, seed=0, test=False,
                 fast=True):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if interpolation not in INTERPOLATIONS:
            raise UserError(f"config key data.interpolation: expected one of {', '.join(INTERPOLATIONS)}, "
                            f"got {interpolation!r}")
        if not root:
            raise UserError("no image folder given (set data.train_path / data.test_path)")
        self.root = str(root)
        self.files = list_images(self.root)  # UserError naming the folder when it is missing
        if not self.files:
            raise UserError(f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under {self.root}")
        self.size = int(size)
        self.interpolation = interpolation
        self.mode = mode
        self.sampler = degradation if isinstance(degradation, DegradationSampler) else DegradationSampler(degradation)
        self.seed = int(seed)
        self.test = bool(test)
        self.fast = bool(fast)
        self.epoch = 0
        # One byte per file, shared with the loader's worker processes (inherited when they start):
        # 1 = the file could not be read. Lets every process skip it and report it once.
        self._bad = multiprocessing.RawArray("b", len(self.files))

    def __len__(self):
        return len(self.files)

    def set_epoch(self, epoch):
        """Epoch used for plain integer keys (the loader's sampler passes (epoch, index) keys instead)."""
        self.epoch = int(epoch)

    # -- files ----------------------------------------------------------------------------------------
    def load_hq(self, index):
        """Item `index` as RGB uint8 (size, size, 3); an unreadable file is replaced by the next readable."""
        n = len(self.files)
        for step in range(n):
            i = (index + step) % n
            if self._bad[i]:
                continue
            path = self.files[i]
            try:
                image = read_image(path)
            except (UserError, cv2.error, OSError, ValueError) as err:
                self._bad[i] = 1
                logger.warning("skipping unreadable image %s (%s)", path, err)
                continue
            if image.shape[:2] != (self.size, self.size):
                image = cv2.resize(image, (self.size, self.size), interpolation=INTERPOLATIONS[self.interpolation])
            return image
        raise UserError(f"none of the {n} images under {self.root} could be read")

    def skipped_files(self):
        """Paths found unreadable so far (by this process or any of the loader's workers)."""
        return [path for path, bad in zip(self.files, self._bad) if bad]

    def summary(self):
        """One line: how many files were skipped, naming the first few; '' when none."""
        skipped = self.skipped_files()
        if not skipped:
            return ""
        shown = ", ".join(os.path.relpath(p, self.root) for p in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        return f"skipped {len(skipped)} of {len(self.files)} images under {self.root} as unreadable: {shown}{more}"

    # -- items ----------------------------------------------------------------------------------------
    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        index = int(index)
        hq = as_float_image(self.load_hq(index))
        if self.mode == "device":
            return to_chw(hq)
        if self.test:
            lq, hq = degrade_for_test(hq, self.seed, index, self.sampler, fast=self.fast)
        else:
            params = self.sampler.sample(hq.shape[:2], *keyed_rngs(TRAIN_STREAM, self.seed, epoch, index))
            lq, hq = degrade(hq, params, self.sampler.kernel_size, fast=self.fast)
        return to_chw(lq), to_chw(hq)


class FaceBatchSampler(DistributedBatchSampler):
    """paddle.io.DistributedBatchSampler that yields (epoch, index) keys.

    One permutation per epoch, seeded by (seed, epoch) and shared by all ranks, is cut into global batches
    of batch_size · world_size; rank r takes the r-th contiguous block of each. So step k of a run with
    W ranks sees exactly the samples that step k of a single process with W times the batch sees, in the
    same order (rank-major). Every pass over the sampler is the next epoch; `set_epoch` repositions it and
    `skip_batches` starts the next pass further in (resuming mid-epoch).
    """

    def __init__(self, dataset, batch_size, num_replicas=None, rank=None, shuffle=True, drop_last=True, seed=0):
        super().__init__(dataset, batch_size, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         drop_last=drop_last)
        self.seed = int(seed)
        self.skip_batches = 0

    def __len__(self):
        per_step = self.batch_size * self.nranks
        n = len(self.dataset)
        return n // per_step if self.drop_last else -(-n // per_step)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        skip, self.skip_batches = self.skip_batches, 0
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng(np.random.SeedSequence([self.seed % (1 << 64), epoch])).permutation(n)
        else:
            order = np.arange(n)
        per_step = self.batch_size * self.nranks
        steps = len(self)
        if not self.drop_last and self.nranks > 1:
            order = np.resize(order, steps * per_step)  # every rank needs a batch: wrap around, as Paddle's does
        for step in range(skip, steps):
            start = step * per_step + self.local_rank * self.batch_size
            keys = [(epoch, int(i)) for i in order[start:start + self.batch_size]]
            if keys:
                yield keys


class _WorkerInit:
    """Seeds each worker's global RNGs from (process seed, worker id)."""

    def __init__(self, process_seed):
        self.process_seed = process_seed

    def __call__(self, worker_id):
        import random

        seq = np.random.SeedSequence([self.process_seed % (1 << 64), worker_id])
        state = seq.generate_state(2)
        random.seed(int(state[0]))
        np.random.seed(int(state[1]))


def build_loader(dataset, batch_size, num_workers=0, shuffle=True, drop_last=True, seed=0, rank=None,
                 world_size=None, start_epoch=0, shared_memory=False, persistent_workers=False):
    """A paddle.io.DataLoader over `dataset` for one process of a (possibly multi-GPU) run.

    rank / world_size default to Paddle's parallel environment. The shuffle order is shared by all
    ranks (seeded by `seed` and the epoch); worker globals are seeded from seed·world_size + rank and the
    worker id. Batches are [lq, hq] lists of [B, 3, S, S] tensors in 'cpu' mode, one [B, 3, S, S] tensor
    (hq) in 'device' mode.
    Iterating the loader again starts the next epoch; `loader.batch_sampler.set_epoch(e)` moves it.

    shared_memory: workers hand batches over in shared memory instead of a pipe (3-4x faster transfer:
    measured 110-144 vs 32-41 pairs/s at 512 with 2 workers here). Off by default: Paddle 3.3's workers
    then allocate Paddle tensors, and a worker forked while another thread of this process is inside
    Paddle's host allocator (e.g. the reader thread of another live loader) deadlocks on its first
    batch (seen in our tests). Safe when this loader forks its workers while no other loader is being
    iterated, e.g. with persistent_workers=True and the first iteration before any other loader starts.
    """
    if world_size is None or rank is None:
        env = paddle.distributed.ParallelEnv()
        world_size = env.nranks if world_size is None else world_size
        rank = env.local_rank if rank is None else rank
    sampler = FaceBatchSampler(dataset, batch_size, num_replicas=world_size, rank=rank, shuffle=shuffle,
                               drop_last=drop_last, seed=seed)
    if num_workers:
        # Workers run in parallel already, so OpenCV inside them is single-threaded. That must be set
        # here, before they fork: a worker forked while OpenCV's thread pool exists hangs in
        # cv2.setNumThreads (the pool's lock is copied held).
        cv2.setNumThreads(1)
    sampler.set_epoch(start_epoch)
    # Without shared memory the workers send plain numpy arrays and never touch Paddle's allocator,
    # whose statistics lock a fork can hand over locked (see the docstring).
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, use_shared_memory=shared_memory,
                      persistent_workers=persistent_workers and num_workers > 0,
                      worker_init_fn=_WorkerInit(seed * world_size + rank) if num_workers else None)


def build_train_dataset(cfg, mode="cpu"):
    """The training FaceDataset of a Config (data.train_path at model.size)."""
    return FaceDataset(cfg.data.train_path, cfg.model.size, cfg.data.interpolation, mode, cfg.degradation,
                       seed=cfg.train.seed)


def build_test_dataset(cfg, path=None):
    """The evaluation FaceDataset of a Config: (lq, hq) pairs of data.test_path (or `path`), degraded
    repeatably with data.test_seed."""
    return FaceDataset(path or cfg.data.test_path, cfg.model.size, cfg.data.interpolation, "cpu",
                       cfg.degradation, seed=cfg.data.test_seed, test=True)
