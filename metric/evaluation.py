"""Evaluation of a generator on a set of faces, as test.py runs it: the three protocols of the field.

* synthetic: sharp faces degraded on the fly by the test-time degradation keyed by (data.test_seed, i)
  (`data_loader.dataset.DegradedFaces`); the numbers repeat exactly whatever the batch size, the
  worker count or the device;
* paired: low-quality faces given as files with their ground truth of the same name (CelebA-Test;
  `PairedFaces`), no degradation;
* no_reference: low-quality faces only (LFW-Test, WebPhoto-Test, CelebChild-Test; `LowQualityFaces`).

Each face is restored by `run` (float32 NCHW in [-1, 1] -> same) and rounded to 8 bit, then scored:

| metric | needs | definition |
|---|---|---|
| psnr, ssim | ground truth | metric.psnr / metric.ssim, 8-bit RGB, against the target (gray when the degradation was) |
| lpips | ground truth, its two files | metric.lpips (lpips 0.1.4, AlexNet v0.1), mean over faces |
| identity_distance | ground truth, IR-SE50 | 1 − cos of the ArcFace embeddings of restored and target (GPEN's identity loss) |
| identity_degrees | ground truth, IR-SE50 | the angle between the same embeddings, in degrees (GFPGAN's "Deg.") |
| niqe | nothing | metric.niqe (BasicSR's calculate_niqe, Y channel); faces where NIQE is undefined are counted and left out |
| fid | Inception, a reference | metric.fid against precomputed statistics, else against the protocol's reference faces (the sharp faces at the model's size / the ground truth); no_reference needs the statistics |

The networks (generator, Inception features, ArcFace, LPIPS) run on the device in batches of
eval.batch_size; NIQE (numpy) runs on the CPU in a worker thread beside them. The per-face values are
kept so that test.py writes them as a table; `--save_dir` images are written losslessly (PNG), so every
number can be recomputed from them.
"""
import csv
import hashlib
import json
import math
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

from metric.psnr import psnr_batch, summarize_psnr
from metric.ssim import ssim_batch
from utils.image_io import write_image
from utils.imaging import to_images, to_network

PROTOCOLS = ("synthetic", "paired", "no_reference")
# Per-face columns of the table, in order (a column appears when its metric was computed).
FACE_METRICS = ("psnr", "ssim", "lpips", "identity_distance", "identity_degrees", "niqe")


@dataclass
class Scorers:
    """What scores the restored faces (None / False: that metric is skipped).

    features: the FID feature function, float32 (N, 3, H, W) RGB in [0, 1] -> (N, 2048)
        (`deploy.features.inception_features`). fid_reference: (mu, sigma) of precomputed reference
        statistics (`metric.fid.load_statistics`); None takes the protocol's reference faces.
    identity: a `loss.id_loss.IDLoss` (its `similarity` of [-1, 1] batches). lpips: a `metric.lpips.LPIPS`.
    niqe: compute NIQE of every restored face.
    """
    features: Optional[Callable] = None
    fid_reference: Optional[tuple] = None
    identity: object = None
    lpips: object = None
    niqe: bool = False


@dataclass
class Evaluation:
    """Result of `evaluate`: means over faces, one row per face, counts."""
    protocol: str
    names: list
    per_face: dict                      # metric -> (N,) float64 per face (NaN: undefined for that face)
    means: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0


def _batches(faces, batch_size, num_workers):
    """Batches of `faces` items as dicts of numpy arrays, in order."""
    if num_workers and getattr(faces, "workers", False):
        from paddle.io import DataLoader

        loader = DataLoader(faces, batch_size=batch_size, shuffle=False, drop_last=False, num_workers=num_workers)
        for batch in loader:
            yield {key: value.numpy() for key, value in batch.items()}
        return
    # File protocols read in this process: reading is cheap next to the network, and a bad file is then
    # one clear error (a loader worker that raises takes the process down).
    for start in range(0, len(faces), batch_size):
        items = [faces[i] for i in range(start, min(start + batch_size, len(faces)))]
        yield {key: np.stack([np.asarray(item[key]) for item in items]) for key in items[0]}


def _niqe_scores(restored):
    from metric.niqe import NIQEUndefined, niqe

    scores = np.empty(len(restored))
    for k, image in enumerate(restored):
        try:
            scores[k] = niqe(np.ascontiguousarray(image[:, :, ::-1]))  # BasicSR's convention: BGR as cv2 reads
        except NIQEUndefined:
            scores[k] = np.nan
    return scores


def _identity(identity, restored, target):
    """(1 − cos, angle in degrees) per pair of the ArcFace embeddings (one batch of both)."""
    import paddle

    cosine = identity.similarity(paddle.to_tensor(to_network(restored)), paddle.to_tensor(to_network(target)))
    cosine = cosine.numpy().astype(np.float64)
    return 1.0 - cosine, np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def evaluate(faces, run, scorers, protocol, batch_size=8, num_workers=0, save_dir="", progress=True):
    """Restore every face of `faces` with `run` and score it (see the module docstring).

    faces: a `data_loader.dataset` evaluation set (items {"input", "index", and "target" / "sharp" /
    "degraded" where the protocol has them}, `name(i)`). Returns an `Evaluation`.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    has_target = protocol != "no_reference"
    if scorers.features is not None and scorers.fid_reference is None and not has_target:
        raise ValueError("FID of the no_reference protocol needs Scorers.fid_reference (statistics)")
    per_face = {name: [] for name in FACE_METRICS}
    restored_features, reference_features, niqe_jobs = [], [], []
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as cpu:
        batches = _batches(faces, batch_size, num_workers)
        for batch in tqdm(batches, total=-(-len(faces) // batch_size), desc="evaluating", disable=not progress,
                          dynamic_ncols=True):
            restored = to_images(run(batch["input"]))
            if scorers.niqe:
                niqe_jobs.append(cpu.submit(_niqe_scores, restored))
            if has_target:
                target = batch["target"]
                per_face["psnr"].append(psnr_batch(restored, target))
                per_face["ssim"].append(ssim_batch(restored, target))
                if scorers.identity is not None:
                    distance, degrees = _identity(scorers.identity, restored, target)
                    per_face["identity_distance"].append(distance)
                    per_face["identity_degrees"].append(degrees)
                if scorers.lpips is not None:
                    from metric.lpips import lpips_batch
                    per_face["lpips"].append(lpips_batch(scorers.lpips, restored, target, batch_size=batch_size))
            if scorers.features is not None:
                from metric.fid import extract_features
                restored_features.append(extract_features(scorers.features, restored, batch_size))
                if scorers.fid_reference is None:
                    reference = batch["sharp"] if protocol == "synthetic" else batch["target"]
                    reference_features.append(extract_features(scorers.features, reference, batch_size))
            if save_dir:
                _save(save_dir, faces, batch, restored)
        per_face["niqe"] = [job.result() for job in niqe_jobs]
    seconds = time.perf_counter() - started
    per_face = {name: np.concatenate(values) for name, values in per_face.items() if values}
    result = Evaluation(protocol, [faces.name(i) for i in range(len(faces))], per_face, seconds=seconds,
                        counts={"faces": len(faces)})
    _summarise(result, scorers, restored_features, reference_features)
    return result


def _save(save_dir, faces, batch, restored):
    folders = {"restored": restored, "target": batch.get("target"), "degraded": batch.get("degraded"),
               "sharp": batch.get("sharp")}  # sharp: the synthetic protocol's FID reference
    for k, index in enumerate(batch["index"].tolist()):
        name = faces.name(index)
        for folder, images in folders.items():
            if images is not None:
                write_image(os.path.join(save_dir, folder, name + ".png"), images[k])


def _summarise(result, scorers, restored_features, reference_features):
    means, counts, per_face = result.means, result.counts, result.per_face
    if "psnr" in per_face:
        psnr = summarize_psnr(per_face["psnr"])
        means["psnr"] = psnr.mean
        counts["psnr_identical_pairs"] = psnr.identical
    for name in ("ssim", "lpips", "identity_distance", "identity_degrees"):
        if name in per_face:
            means[name] = float(np.mean(per_face[name]))
    if "niqe" in per_face:
        defined = per_face["niqe"][~np.isnan(per_face["niqe"])]
        counts["niqe_undefined"] = int(per_face["niqe"].size - defined.size)
        if defined.size:
            means["niqe"] = float(np.mean(defined))
    if scorers.features is not None:
        from metric.fid import compute_statistics, frechet_distance

        mu, sigma = compute_statistics(np.concatenate(restored_features))
        reference = scorers.fid_reference or compute_statistics(np.concatenate(reference_features))
        means["fid"] = frechet_distance(mu, sigma, *reference)


# ----------------------------------------------------------------------------------------------
# What test.py writes.

def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def per_image_path(report_path):
    return os.path.splitext(report_path)[0] + "_per_image.csv"


def write_per_image(path, result):
    """One row per face: name, then each computed metric (inf: identical pair; empty: undefined)."""
    columns = [name for name in FACE_METRICS if name in result.per_face]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", *columns])
        for i, name in enumerate(result.names):
            values = [result.per_face[column][i] for column in columns]
            writer.writerow([name, *("" if math.isnan(v) else repr(float(v)) for v in values)])
    return path


def write_report(path, result, cfg_dict, weights, backend, inputs, fid_reference=None):
    """report.json: protocol, inputs, counts, the means, the weights' hash, the config, versions.

    inputs: {what: folder} read by the protocol. fid_reference: a statistics file, or None (the
    protocol's reference faces) — recorded with its hash.
    """
    import paddle

    metrics = dict(result.means, count=result.counts["faces"], seconds=result.seconds)
    if "psnr_identical_pairs" in result.counts:
        metrics["psnr_identical_pairs"] = result.counts["psnr_identical_pairs"]
    report = {
        "protocol": result.protocol,
        "inputs": {what: os.path.abspath(folder) for what, folder in inputs.items()},
        "metrics": metrics,
        "counts": result.counts,
        "count": result.counts["faces"],
        "fid_reference": ({"path": os.path.abspath(fid_reference), "sha256": file_sha256(fid_reference)}
                          if fid_reference else "reference faces" if "fid" in result.means else None),
        "per_image": os.path.abspath(per_image_path(path)),
        "weights": {"path": os.path.abspath(weights), "sha256": file_sha256(weights)},
        "config": cfg_dict,
        "seed": cfg_dict["data"]["test_seed"] if result.protocol == "synthetic" else None,
        "backend": backend,
        "versions": {"python": platform.python_version(), "paddle": paddle.__version__,
                     "numpy": np.__version__, "platform": platform.platform()},
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=float)
    write_per_image(per_image_path(path), result)
    return path
