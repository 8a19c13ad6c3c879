"""Reading the MTCNN weights that the `mtcnn` package (MIT, version 1.0.0) ships in its wheel.

The files `mtcnn/assets/weights/{pnet,rnet,onet}.lz4` are joblib dumps compressed with an LZ4 frame:
decompressed, each is a pickle (protocol 4) of a list of `joblib.numpy_pickle.NumpyArrayWrapper`
place-holders, each followed in the byte stream by the raw bytes of its array (an alignment byte
count, that many padding bytes, then the C-ordered data). The list is the Keras `get_weights()` order.

Loading runs no pickled code: the project's one restricted unpickler (utils.weights) resolves only
three names here (the wrapper, numpy's ndarray class as an inert marker, numpy's dtype restricted to
plain numeric types), and a hook on BUILD reads the array bytes that follow each wrapper. The `mtcnn` package is located through its installed metadata, so its `__init__` (which
imports TensorFlow) is never executed.
"""
import importlib.metadata
import io
import os
import pickle

import numpy as np

from utils.errors import UserError
from utils.weights import NUMPY_GLOBALS, restricted_load

NETWORKS = ("pnet", "rnet", "onet")


class _ArrayPlaceholder:
    """Stands in for joblib's NumpyArrayWrapper: receives its attribute dict, nothing else."""


def _read_array(stream, meta):
    """The array joblib writes into the stream right after its NumpyArrayWrapper's BUILD."""
    dtype, shape, order = meta["dtype"], tuple(int(n) for n in meta["shape"]), meta.get("order", "C")
    if not isinstance(dtype, np.dtype) or meta.get("subclass", np.ndarray) is not np.ndarray:
        raise pickle.UnpicklingError("unexpected array description in a weight file")
    if meta.get("numpy_array_alignment_bytes") is not None:
        padding = stream.read(1)[0]
        stream.read(padding)
    count = int(np.prod(shape, dtype=np.int64))
    data = stream.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise pickle.UnpicklingError("weight file ends inside an array")
    array = np.frombuffer(data, dtype=dtype, count=count)
    array = array.reshape(shape[::-1]).T if order == "F" else array.reshape(shape)
    return np.ascontiguousarray(array.astype(dtype.newbyteorder("=")))


# The three names a joblib dump of arrays needs: the wrapper (an inert placeholder receiving its attribute
# dict), numpy's ndarray class (only stored as the wrapper's `subclass`) and numeric dtypes.
_JOBLIB_GLOBALS = {
    ("joblib.numpy_pickle", "NumpyArrayWrapper"): _ArrayPlaceholder,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): NUMPY_GLOBALS[("numpy", "dtype")],
}


def read_joblib_lz4_arrays(path):
    """The list of numpy arrays stored in a joblib+LZ4 file, read without running pickled code."""
    try:
        import lz4.frame
    except ImportError:
        raise UserError("the MTCNN face detector needs the `mtcnn` package (it brings `lz4`): "
                        "pip install mtcnn==1.0.0") from None
    try:
        with open(path, "rb") as handle:
            raw = lz4.frame.decompress(handle.read())
    except (OSError, RuntimeError) as err:
        raise UserError(f"not an MTCNN weight file (joblib + lz4 arrays): {path} ({err})") from None
    stream = io.BytesIO(raw)

    def read_wrapped_array(obj):
        return _read_array(stream, obj.__dict__) if isinstance(obj, _ArrayPlaceholder) else obj

    arrays = restricted_load(stream, path, _JOBLIB_GLOBALS, build_hook=read_wrapped_array)
    if not isinstance(arrays, list) or not all(isinstance(a, np.ndarray) for a in arrays):
        raise UserError(f"not an MTCNN weight file (expected a list of arrays): {path}")
    return arrays


def default_weight_dir():
    """The `assets/weights` folder of the installed `mtcnn` package (found without importing it)."""
    try:
        dist = importlib.metadata.distribution("mtcnn")
    except importlib.metadata.PackageNotFoundError:
        raise UserError("the default face detector (MTCNN) takes its weights from the `mtcnn` package: "
                        "pip install mtcnn==1.0.0 (or use --detector yunet --detector_model FILE.onnx)") from None
    folder = str(dist.locate_file(os.path.join("mtcnn", "assets", "weights")))
    if not all(os.path.isfile(os.path.join(folder, f"{net}.lz4")) for net in NETWORKS):
        raise UserError(f"the installed `mtcnn` package has no weights in {folder}; "
                        "reinstall it: pip install --force-reinstall mtcnn==1.0.0")
    return folder


def load_mtcnn_weights(folder=None):
    """{'pnet': [arrays], 'rnet': [...], 'onet': [...]} from `folder` (default: the mtcnn package)."""
    folder = folder or default_weight_dir()
    weights = {}
    for net in NETWORKS:
        path = os.path.join(folder, f"{net}.lz4")
        if not os.path.isfile(path):
            raise UserError(f"MTCNN weight file not found: {path}")
        weights[net] = read_joblib_lz4_arrays(path)
    return weights
