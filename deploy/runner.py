"""Running the generator on arrays: `run(x) -> y`, float32 (N, 3, S, S) in [-1, 1] both ways.

backend 'dygraph' runs the Paddle layer; 'predictor' exports it to a Paddle Inference predictor with
oneDNN (CPU; ~3x faster than dygraph here); 'auto' uses the predictor on CPU and dygraph on GPU.
Because Paddle's oneDNN kernels have returned wrong values for some graphs (see deploy.predictor), the
predictor's first batch is checked against dygraph; on a mismatch 'auto' warns and falls back to
dygraph (and 'predictor' fails).

On CPU the network sees one face at a time whatever batch the caller passes: it is the fastest per
face with oneDNN here (267 ms at batch 1 vs 424 ms at batch 4 and 509 ms at batch 8, GPEN-256), and it
makes every result independent of the batch size, so evaluation numbers repeat to the last digit.
"""
import warnings

import numpy as np
import paddle

from deploy.predictor import Predictor
from utils.errors import UserError

BACKENDS = ("auto", "dygraph", "predictor")
AGREEMENT = 1e-3  # max |predictor − dygraph| accepted on the first batch (float32 noise is ~1e-5)


class GeneratorRunner:
    def __init__(self, generator, size, backend="auto", threads=0):
        if backend not in BACKENDS:
            raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        generator.eval()
        self.generator = generator
        self.size = size
        on_cpu = paddle.get_device() == "cpu"
        self.backend = ("predictor" if on_cpu else "dygraph") if backend == "auto" else backend
        self._auto = backend == "auto"
        self._checked = False
        self._predictor = None
        self.compute_batch = 1 if on_cpu else None
        if self.backend == "predictor":
            if not on_cpu:
                raise UserError("the predictor backend is the CPU fast path; on a GPU use dygraph")
            self._predictor = Predictor.from_layer(generator, [3, size, size], output_index=0, threads=threads)

    @paddle.no_grad()
    def _dygraph(self, x):
        return self.generator(paddle.to_tensor(x))[0].numpy()

    def __call__(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.compute_batch and len(x) > self.compute_batch:
            step = self.compute_batch
            return np.concatenate([self._run(x[i:i + step]) for i in range(0, len(x), step)])
        return self._run(x)

    def _run(self, x):
        if self._predictor is None:
            return self._dygraph(x)
        y = self._predictor(x)
        if not self._checked:
            reference = self._dygraph(x)
            gap = float(np.abs(y - reference).max()) if np.isfinite(y).all() else float("inf")
            self._checked = True
            if gap > AGREEMENT:
                message = (f"the oneDNN predictor disagrees with the dygraph generator (max |diff| {gap:.3g}); "
                           f"using dygraph")
                if not self._auto:
                    raise UserError(message.replace("; using dygraph", ""))
                warnings.warn(message, RuntimeWarning)
                self._predictor, self.backend = None, "dygraph"
                return reference
        return y
