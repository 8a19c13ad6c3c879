"""Feature networks of the metrics, served the fast way on this device: the functions `metric/` receives.

`metric.fid` computes FID from a *feature function* — float32 (N, 3, H, W) RGB in [0, 1] -> (N, 2048)
pool3 features — and knows nothing of how the network behind it runs. This module builds that
function from pytorch-fid's Inception weights:

* the resize to 299 and the 2x − 1 normalisation (`FIDInceptionV3.prepare_input`) run in dygraph:
  Paddle 3.3's oneDNN executor rejects the bilinear resize op's attributes;
* the rest (`Pool3FromPrepared`) runs through `deploy.checked.checked_layer`: the oneDNN predictor on a
  CPU, checked against dygraph (finite on every batch, the first within `deploy.checked.TOLERANCE`,
  a warned fallback to dygraph), dygraph on a GPU.
"""
import numpy as np

from deploy.checked import checked_layer

INCEPTION_WHAT = "Inception network (FID)"


class InceptionFeatures:
    """pytorch-fid's pool3 features: `features(x)` with x float32 (N, 3, H, W) RGB in [0, 1], any H, W
    -> (N, 2048) float32. `backend` says what serves the network ('predictor' or 'dygraph')."""

    def __init__(self, network, backend="auto", threads=0):
        from metric.inception import INPUT_SIZE, Pool3FromPrepared

        self.network = network
        self._pool3 = checked_layer(Pool3FromPrepared(network), [3, INPUT_SIZE, INPUT_SIZE], INCEPTION_WHAT,
                                    backend=backend, threads=threads)

    @property
    def backend(self):
        return self._pool3.backend

    def __call__(self, x):
        import paddle

        with paddle.no_grad():
            prepared = self.network.prepare_input(paddle.to_tensor(np.ascontiguousarray(x, dtype=np.float32)))
        return self._pool3(prepared.numpy())


def inception_features(weights, backend="auto", threads=0):
    """The FID feature function of pytorch-fid's Inception weights (`pt_inception-2015-12-05-6726825d.pth`
    or its .pdparams; a missing or wrong file is a UserError saying what FID needs).

    backend: 'auto' (oneDNN predictor on CPU, checked, falling back to dygraph with a warning; dygraph on
    GPU), 'predictor' (a disagreement is an error) or 'dygraph'. threads: the predictor's CPU threads
    (0 = the process's OMP_NUM_THREADS, as dygraph).
    """
    from metric.inception import load_inception

    return InceptionFeatures(load_inception(weights), backend=backend, threads=threads)
