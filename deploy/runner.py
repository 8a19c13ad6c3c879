"""Running the generator on arrays: `run(x) -> y`, float32 (N, 3, S, S) in [-1, 1] both ways.

The network is served by `deploy.checked.checked_layer`: on a CPU the exported oneDNN predictor
(the fast path), checked against dygraph (finite on every batch, the first batch within the one
tolerance, dygraph for the rest of the run on a failure); dygraph on a GPU.

compute_batch: how many faces the network sees per call whatever batch the caller passes. On this
project's CPU measurements batch 1 was the fastest per face with oneDNN (see the README's
benchmarks), so the CPU default is 1; None passes the caller's batches through (the GPU default).
Splitting also makes every result independent of the caller's batch size.
"""
import numpy as np
import paddle

from deploy.checked import BACKENDS, checked_layer


class GeneratorRunner:
    def __init__(self, generator, size, backend="auto", threads=0, compute_batch="auto"):
        self.size = size
        self.network = checked_layer(generator, [3, size, size], "GPEN generator", backend=backend, threads=threads,
                                     output_index=0)
        if compute_batch == "auto":
            compute_batch = 1 if paddle.get_device() == "cpu" else None
        self.compute_batch = compute_batch

    @property
    def backend(self):
        return self.network.backend

    def __call__(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        step = self.compute_batch
        if step and len(x) > step:
            return np.concatenate([self.network(x[i:i + step]) for i in range(0, len(x), step)])
        return self.network(x)


__all__ = ["BACKENDS", "GeneratorRunner"]
