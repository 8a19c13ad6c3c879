"""A fast network run checked against its reference: the one policy for every exported network.

Paddle 3.3's oneDNN predictor is ~3x faster than dygraph on the CPU but has returned wrong values for
some graphs and, in some fresh processes, all-NaN outputs (GPEN_SPEC §9). So every network served
through a predictor is wrapped in a `CheckedNetwork`:

* every batch's output must be finite;
* the first batch must agree with the reference (dygraph, or the same program without oneDNN) within
  `TOLERANCE` of the reference's largest value;
* on a failure (or when the predictor cannot be built at all) the network falls back to the reference
  for the rest of the run, with one warning (`strict=True` raises instead);
* a reference output that is not finite raises a UserError: a non-finite result is never returned, so
  it is never written as an image or a score.
"""
import warnings

import numpy as np

from utils.errors import UserError

# max |fast − reference| allowed, relative to max(1, max |reference|). Float32 noise between the
# predictor and dygraph is ~1e-6 of the largest value for every network here.
TOLERANCE = 1e-4


def agreement_gap(fast, reference):
    """max |fast − reference| / max(1, max |reference|); inf when `fast` is not finite."""
    if not np.isfinite(fast).all():
        return float("inf")
    scale = max(1.0, float(np.abs(reference).max())) if reference.size else 1.0
    return float(np.abs(fast - reference).max()) / scale if reference.size else 0.0


class CheckedNetwork:
    """`fast(x) -> y` checked against `reference(x) -> y` (numpy arrays both ways, see module doc).

    what: the network's name for messages ("GPEN generator"). reference: None when there is none (then
    only finiteness is checked, and a non-finite output is an error). strict: raise instead of falling
    back. backend: a label of the fast path ('predictor'); after a fallback `backend` is 'dygraph'.
    """

    def __init__(self, fast, reference, what, strict=False, backend="predictor", reference_backend="dygraph"):
        self._fast = fast
        self._reference = reference
        self.what = what
        self.strict = strict
        self.backend = backend if fast is not None else reference_backend
        self._reference_backend = reference_backend
        self._verified = reference is None

    def _fail(self, message):
        if self.strict or self._reference is None:
            raise UserError(message)
        warnings.warn(message + f"; using {self._reference_backend} for the rest of this run", RuntimeWarning)
        self._fast, self.backend = None, self._reference_backend

    def _run_reference(self, x):
        y = np.asarray(self._reference(x))
        if not np.isfinite(y).all():
            raise UserError(f"the {self.what} returned a non-finite output ({self.backend}); nothing is written "
                            f"for this input (are the weights finite?)")
        return y

    def __call__(self, x):
        if self._fast is None:
            return self._run_reference(x)
        y = np.asarray(self._fast(x))
        if not np.isfinite(y).all():
            self._fail(f"the {self.what}'s {self.backend} returned a non-finite output")
            return self._run_reference(x)
        if not self._verified:
            reference = self._run_reference(x)
            gap = agreement_gap(y, reference)
            self._verified = True
            if gap > TOLERANCE:
                self._fail(f"the {self.what}'s {self.backend} disagrees with {self._reference_backend} "
                           f"(max |diff| {gap:.3g} of the largest value, tolerance {TOLERANCE:g})")
                return reference
        return y


def dygraph_function(layer, output_index=None):
    """numpy -> numpy through a Paddle layer in eval mode, without gradients."""
    import paddle

    layer.eval()

    @paddle.no_grad()
    def run(x):
        out = layer(paddle.to_tensor(np.ascontiguousarray(x, dtype=np.float32)))
        if output_index is not None:
            out = out[output_index]
        return out.numpy()

    return run


BACKENDS = ("auto", "dygraph", "predictor")


def checked_layer(layer, input_shape, what, backend="auto", threads=0, output_index=None, strict=None):
    """A Paddle layer served the fast way on this device, checked (see module doc).

    backend 'auto': the oneDNN predictor on a CPU (checked against dygraph, falling back with a
    warning), dygraph on a GPU. 'predictor': the same, but a disagreement is an error. 'dygraph': the
    layer itself (outputs still checked for finiteness). input_shape: (C, H, W) of the exported input
    (None for an open H or W: the program then accepts any spatial size); the batch stays dynamic.
    output_index: export and return only that element of a tuple output.
    """
    import paddle

    from deploy.predictor import Predictor

    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    on_cpu = paddle.get_device() == "cpu"
    if backend == "predictor" and not on_cpu:
        raise UserError("the predictor backend is the CPU fast path; on a GPU use dygraph")
    reference = dygraph_function(layer, output_index)
    if backend == "dygraph" or (backend == "auto" and not on_cpu):
        return CheckedNetwork(None, reference, what)
    strict = (backend == "predictor") if strict is None else strict
    try:
        predictor = Predictor.from_layer(layer, input_shape, output_index=output_index, threads=threads)
    except Exception as err:  # noqa: BLE001  (an export or a predictor pass that fails: dygraph is the reference)
        if strict:
            raise
        warnings.warn(f"the {what}'s predictor could not be built ({type(err).__name__}: "
                      f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}); using dygraph", RuntimeWarning)
        return CheckedNetwork(None, reference, what)
    return CheckedNetwork(predictor, reference, what, strict=strict)


def checked_predictor(model_file, params_file, what, device="cpu", threads=0, mkldnn=True, **options):
    """An exported model (deploy.predictor.Predictor) checked by the same policy. With oneDNN on a CPU the
    reference is the same program without oneDNN (built on the first batch); otherwise only finiteness
    is checked (a GPU's fp16/TensorRT output is not expected to equal fp32 to 1e-4)."""
    from deploy.predictor import Predictor

    fast = Predictor(model_file, params_file, device=device, threads=threads, mkldnn=mkldnn, **options)
    if device != "cpu" or not mkldnn:
        return CheckedNetwork(fast, None, what, backend="predictor")
    reference = []

    def without_onednn(x):
        if not reference:
            reference.append(Predictor(model_file, params_file, device="cpu", threads=threads, mkldnn=False))
        return reference[0](x)

    return CheckedNetwork(fast, without_onednn, what, backend="oneDNN predictor",
                          reference_backend="predictor without oneDNN")
