"""Evaluation of a generator on a folder of sharp faces, as test.py runs it.

Every face i is resized to the model's size and degraded with the test-time degradation keyed by
(data.test_seed, i) (data_loader.degrade_for_test): the numbers repeat exactly whatever the batch
size, the worker count or the device. Then:

* PSNR and SSIM (8-bit RGB, metric.psnr / metric.ssim) between the restored face and the ground truth
  the degraded face was made from (gray when the degradation turned it gray);
* FID (metric.fid, pytorch-fid's Inception and Fréchet distance) between the restored faces and the
  sharp faces at the model's size, or a precomputed reference (`--fid_stats`);
* ArcFace identity distance 1 − cos(restored, ground truth) when IR-SE50 weights are given;
* LPIPS (metric.lpips, lpips 0.1.4's AlexNet v0.1) between the restored face and the ground truth, the
  mean over faces, when its two weight files are given.
"""
import hashlib
import json
import os
import platform
import time

import numpy as np
from paddle.io import DataLoader, Dataset
from tqdm import tqdm

from data_loader.dataset import FaceDataset
from data_loader.degradations import as_float_image, degrade_for_test
from metric.psnr import psnr_batch, summarize_psnr
from metric.ssim import ssim_batch
from utils.image_io import write_image
from utils.imaging import to_images, to_network


class DegradedFaces(Dataset):
    """(degraded (3, S, S) float32 in [-1, 1], ground truth (S, S, 3) uint8, sharp (S, S, 3) uint8, index)."""

    def __init__(self, cfg):
        self.faces = FaceDataset(cfg.data.test_path, cfg.model.size, cfg.data.interpolation, "cpu",
                                 cfg.degradation, seed=cfg.data.test_seed, test=True)
        self.seed = cfg.data.test_seed

    def __len__(self):
        return len(self.faces)

    def __getitem__(self, index):
        sharp = self.faces.load_hq(index)
        lq, gt = degrade_for_test(as_float_image(sharp), self.seed, index, self.faces.sampler)
        return to_network(lq[None])[0], to_images(to_network(gt[None]))[0], sharp, index

    def name(self, index):
        return os.path.splitext(os.path.relpath(self.faces.files[index], self.faces.root))[0]


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def evaluate(cfg, run, inception=None, id_loss=None, limit=0, save_dir="", progress=True, lpips=None):
    """Run `run` (float32 NCHW in [-1, 1] -> same) over the degraded test faces; returns the metrics.

    inception: a metric.fid.InceptionFeatures or None (FID skipped). id_loss: a loss.id_loss.IDLoss or
    None (identity distance skipped). lpips: a metric.lpips.LPIPS (metric.lpips.load_lpips) or None
    (LPIPS skipped). limit: evaluate the first `limit` faces only (0 = all).
    """
    dataset = DegradedFaces(cfg)
    n = min(limit, len(dataset)) if limit else len(dataset)
    indices = list(range(n))
    subset = dataset if n == len(dataset) else _Subset(dataset, indices)
    loader = DataLoader(subset, batch_size=cfg.eval.batch_size, shuffle=False, drop_last=False,
                        num_workers=cfg.data.num_workers)
    psnrs, ssims, identity, perceptual, restored_features, sharp_features = [], [], [], [], [], []
    started = time.perf_counter()
    for lq, gt, sharp, index in tqdm(loader, total=len(loader), desc="evaluating", disable=not progress,
                                     dynamic_ncols=True):
        restored = to_images(run(lq.numpy()))
        gt, sharp = gt.numpy(), sharp.numpy()
        psnrs.append(psnr_batch(restored, gt))
        ssims.append(ssim_batch(restored, gt))
        if inception is not None:
            restored_features.append(inception.extract_features(restored, batch_size=cfg.eval.batch_size))
            sharp_features.append(inception.extract_features(sharp, batch_size=cfg.eval.batch_size))
        if id_loss is not None:
            import paddle
            similarity = id_loss.similarity(paddle.to_tensor(to_network(restored)), paddle.to_tensor(to_network(gt)))
            identity.append(1.0 - similarity.numpy().astype(np.float64))
        if lpips is not None:
            from metric.lpips import lpips_batch
            perceptual.append(lpips_batch(lpips, restored, gt, batch_size=cfg.eval.batch_size))
        if save_dir:
            for k, i in enumerate(index.numpy().tolist()):
                name = dataset.name(i)
                write_image(os.path.join(save_dir, "restored", name + ".png"), restored[k])
                write_image(os.path.join(save_dir, "degraded", name + ".png"), to_images(lq.numpy()[k:k + 1])[0])
    seconds = time.perf_counter() - started
    psnr = summarize_psnr(np.concatenate(psnrs))
    metrics = {"count": n, "psnr": psnr.mean, "psnr_identical_pairs": psnr.identical,
               "ssim": float(np.mean(np.concatenate(ssims))), "seconds": seconds}
    if inception is not None:
        metrics["fid"] = _fid(cfg, np.concatenate(restored_features), np.concatenate(sharp_features))
    if id_loss is not None:
        metrics["identity_distance"] = float(np.mean(np.concatenate(identity)))
    if lpips is not None:
        metrics["lpips"] = float(np.mean(np.concatenate(perceptual)))
    return metrics


def _fid(cfg, restored, sharp):
    from metric.fid import compute_statistics, frechet_distance, load_statistics

    mu, sigma = compute_statistics(restored)
    if cfg.eval.fid_stats:
        mu_ref, sigma_ref = load_statistics(cfg.eval.fid_stats)
    else:
        mu_ref, sigma_ref = compute_statistics(sharp)
    return frechet_distance(mu, sigma, mu_ref, sigma_ref)


class _Subset(Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


def write_report(path, cfg_dict, weights, metrics, backend):
    import paddle

    report = {
        "metrics": metrics,
        "weights": {"path": os.path.abspath(weights), "sha256": file_sha256(weights)},
        "config": cfg_dict,
        "count": metrics["count"],
        "seed": cfg_dict["data"]["test_seed"],
        "backend": backend,
        "versions": {"python": platform.python_version(), "paddle": paddle.__version__,
                     "numpy": np.__version__, "platform": platform.platform()},
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=float)
    return path

