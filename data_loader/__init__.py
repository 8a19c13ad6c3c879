"""Face datasets, the data loader and the synthetic degradation (GPEN_SPEC §6).

`from data_loader import degrade_test_face` does not import Paddle; the names that need it (the dataset,
the loader, the device executor) are imported on first use, so that scripts can still set Paddle's CPU
threads (utils.runtime.prepare_cpu) after importing this package.
"""
import importlib

from data_loader.degradations import (DegradationParams, DegradationSampler, DegradedFace, KernelSpec, degrade,
                                      degrade_test_face, jpeg_roundtrip, random_mixed_kernels)

_LAZY = {
    "FaceDataset": "data_loader.dataset",
    "FaceBatchSampler": "data_loader.dataset",
    "build_loader": "data_loader.dataset",
    "build_train_dataset": "data_loader.dataset",
    "DegradedFaces": "data_loader.dataset",
    "PairedFaces": "data_loader.dataset",
    "LowQualityFaces": "data_loader.dataset",
    "resolve_mode": "data_loader.dataset",
    "DeviceDegradation": "data_loader.device_degradation",
    "jpeg_compress": "data_loader.device_degradation",
}

__all__ = ["DegradationParams", "DegradationSampler", "DegradedFace", "KernelSpec", "degrade", "degrade_test_face",
           "jpeg_roundtrip", "random_mixed_kernels", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'data_loader' has no attribute {name!r}")
