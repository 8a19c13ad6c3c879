"""Face folders as Paddle datasets, and the data loader that feeds training and evaluation.

FaceDataset(root, size, ...)[key] reads one HQ face (any png/jpg/jpeg/bmp/webp under `root`, nested
folders included, sorted by path), resizes it to size x size and returns float32 RGB CHW in [-1, 1]:

* mode 'device': the HQ image only; the LQ is made on the training device (`DeviceDegradation`);
* mode 'cpu': (lq, hq), degraded here, in the loader's worker (`degradations.degrade`) — the order of the
  authors' FaceDataset, which returns (degraded, real).

Randomness is keyed, not streamed: the degradation of item i in epoch e depends only on (seed, e, i),
so a run repeats exactly whatever the number of workers, the batch size or the ranks that share the
data. `build_loader` makes the sampler pass the epoch along with each index ((epoch, index) keys).

The evaluation sets of test.py's protocols and of validation are below FaceDataset: `DegradedFaces`
(sharp faces through the test-time degradation, keyed by (test_seed, i)), `PairedFaces`, `LowQualityFaces`.

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
                                      degrade_test_face, keyed_rngs)
from utils.errors import UserError
from utils.image_io import IMAGE_EXTENSIONS, list_images, read_image
from utils.imaging import INTERPOLATIONS, resize_square, to_network

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
    seed: training seed (cfg.train.seed).
    fast: the CPU executor's fast blur (equal to the authors' filter2D within ~1e-6).
    """

    def __init__(self, root, size, interpolation="area", mode="cpu", degradation=None, seed=0, fast=True):
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
            return to_network(hq)
        params = self.sampler.sample(hq.shape[:2], *keyed_rngs(TRAIN_STREAM, self.seed, epoch, index))
        lq, hq = degrade(hq, params, self.sampler.kernel_size, fast=self.fast)
        return to_network(lq), to_network(hq)


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


# ----------------------------------------------------------------------------------------------------
# Evaluation sets: what test.py's three protocols read (metric/evaluation.py).
#
# Every item is a dict: "input" float32 (3, S, S) RGB in [-1, 1] (what the generator is fed) and "index";
# where the protocol has them, "target" uint8 (S, S, 3) RGB (the ground truth of PSNR, SSIM, LPIPS and
# identity), "sharp" (the synthetic protocol's FID reference) and "degraded" (its LQ, saved). `name(i)`
# is face i's path relative to its folder without the extension: the name of its saved files and of its
# row in the per-image table.

def face_name(path, root):
    return os.path.splitext(os.path.relpath(path, root))[0]


class DegradedFaces(Dataset):
    """Synthetic protocol: the sharp faces of `root` at `size` (resized with `interpolation`), each degraded
    by `degrade_test_face` keyed by (seed, index). Unreadable files are skipped as in FaceDataset."""

    workers = True  # degrading costs more than reading; the loader's workers share it

    def __init__(self, root, size, interpolation="area", degradation=None, seed=0):
        self.faces = FaceDataset(root, size, interpolation, "device")
        self.sampler = degradation if isinstance(degradation, DegradationSampler) else DegradationSampler(degradation)
        self.seed = int(seed)

    def __len__(self):
        return len(self.faces)

    def name(self, index):
        return face_name(self.faces.files[index], self.faces.root)

    def __getitem__(self, index):
        sharp = self.faces.load_hq(index)
        face = degrade_test_face(sharp, self.seed, index, self.sampler)
        return {"input": face.network_input, "target": face.target, "sharp": sharp, "degraded": face.degraded,
                "index": index}


def _square_face(path, size, interpolation):
    image = read_image(path)
    if image.shape[0] != image.shape[1]:
        raise UserError(f"{path} is {image.shape[1]}x{image.shape[0]}: evaluation faces are aligned square crops")
    return resize_square(image, size, interpolation)


def _files_by_name(root, what):
    files = {}
    for path in list_images(root):
        name = face_name(path, root)
        if name in files:
            raise UserError(f"{what} folder {root} holds two images named {name} "
                            f"({os.path.basename(files[name])}, {os.path.basename(path)}): names must be unique")
        files[name] = path
    if not files:
        raise UserError(f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under {root}")
    return files


def match_by_name(lq_root, hq_root):
    """Pair the files of two folders by relative path without extension (so 0001.png matches 0001.jpg).

    Returns ([(name, lq path, hq path)] sorted by name, [names of HQ files without an LQ]). Every LQ
    needs its ground truth: an LQ without one is refused (a score over fewer faces than given would
    not be the set's score); HQ files without an LQ are left out and counted.
    """
    lq, hq = _files_by_name(lq_root, "LQ"), _files_by_name(hq_root, "HQ")
    missing = [name for name in lq if name not in hq]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserError(f"{len(missing)} of the {len(lq)} LQ faces under {lq_root} have no ground truth of the "
                        f"same name under {hq_root}: {shown}")
    pairs = [(name, lq[name], hq[name]) for name in sorted(lq)]
    return pairs, sorted(name for name in hq if name not in lq)


class PairedFaces(Dataset):
    """Paired protocol (e.g. CelebA-Test): LQ faces given as files, each with its ground truth of the same
    name (`match_by_name`); no degradation. The LQ is resized to `size` with `lq_interpolation` (the
    field's inference scripts: bilinear), the ground truth with `hq_interpolation` (as every sharp face)."""

    workers = False  # reading is cheap next to the network; in this process a bad file is one clear line

    def __init__(self, lq_root, hq_root, size, lq_interpolation="bilinear", hq_interpolation="area"):
        self.pairs, self.unmatched_hq = match_by_name(lq_root, hq_root)
        self.size, self.lq_interpolation, self.hq_interpolation = int(size), lq_interpolation, hq_interpolation

    def __len__(self):
        return len(self.pairs)

    def name(self, index):
        return self.pairs[index][0]

    def __getitem__(self, index):
        _, lq, hq = self.pairs[index]
        return {"input": to_network(_square_face(lq, self.size, self.lq_interpolation)),
                "target": _square_face(hq, self.size, self.hq_interpolation), "index": index}


class LowQualityFaces(Dataset):
    """No-reference protocol (e.g. LFW-Test, WebPhoto-Test): LQ faces only, resized like PairedFaces's."""

    workers = False

    def __init__(self, lq_root, size, lq_interpolation="bilinear"):
        self.root = str(lq_root)
        self.files = list(_files_by_name(self.root, "LQ").values())
        self.size, self.lq_interpolation = int(size), lq_interpolation

    def __len__(self):
        return len(self.files)

    def name(self, index):
        return face_name(self.files[index], self.root)

    def __getitem__(self, index):
        return {"input": to_network(_square_face(self.files[index], self.size, self.lq_interpolation)),
                "index": index}


class FirstFaces(Dataset):
    """The first `count` faces of an evaluation set (test.py --limit); items and names are the set's."""

    def __init__(self, faces, count):
        self.faces, self.count = faces, min(int(count), len(faces))
        self.workers = getattr(faces, "workers", False)

    def __len__(self):
        return self.count

    def name(self, index):
        return self.faces.name(index)

    def __getitem__(self, index):
        return self.faces[index]
