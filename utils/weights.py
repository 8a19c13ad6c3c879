"""Reading weight files safely, whatever network they belong to.

* One restricted unpickler (`restricted_load`): a weight file may only rebuild tensors, numpy arrays and
  plain containers. A pickle that asks for anything else (`os.system`, say) is refused before it runs.
* `read_torch_file` reads a PyTorch checkpoint **without torch**: the zip container of torch >= 1.6 and
  the older raw-pickle container (files saved before torch 1.6, like `model_ir_se50.pth` and
  pytorch-fid's Inception weights), float32, float16 and the other storage types. `numpy_arrays=True`
  also admits numpy arrays pickled inside it (BasicSR's FID statistics are such a file).
* `read_paddle_file` reads a `.pdparams` / `.pdopt` / our training checkpoints.
* `WeightKind` describes the files of one network: the keys every such file has, where a checkpoint
  nests the state dict, and the layout changes from PyTorch's modules to ours. Each network module
  declares its own kind next to the network; `read_state_dict(path, kind)` returns a state dict of
  numpy arrays in our layout, with what the file stores about itself.

Nothing here imports paddle: callers turn the arrays into tensors with `set_state_dict`.
"""
import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

from utils.errors import UserError

# ----------------------------------------------------------------------------------------------
# The restricted unpickler.


class _Refused(Exception):
    pass


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler lets BUILD be intercepted
    """Resolves only the globals in `allowed` {(module, name): object}; persistent ids go to
    `persistent_load`, and `build_hook(obj) -> obj` (optional) sees every object right after BUILD."""

    def __init__(self, stream, allowed, persistent_load=None, build_hook=None):
        super().__init__(stream)
        self._allowed = allowed
        self._persistent = persistent_load
        self._build_hook = build_hook

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent(pid)

    def _load_build(self):
        pickle._Unpickler.load_build(self)
        if self._build_hook is not None:
            self.stack[-1] = self._build_hook(self.stack[-1])

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build


def restricted_load(data, path, allowed, persistent_load=None, build_hook=None):
    """Unpickle `data` (bytes or a binary stream) with only `allowed` globals; any refusal or corruption
    becomes one UserError naming `path`."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return RestrictedUnpickler(stream, allowed, persistent_load, build_hook).load()
    except _Refused as err:
        raise UserError(f"{path}: refused to load: its pickle asks for '{err}', which is not a tensor, an array "
                        f"or a plain container (a weight file must not run code); re-save it as a plain state "
                        f"dict") from None
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001  (corrupt or truncated data)
        raise UserError(f"{path}: not a readable weight file ({type(err).__name__}: {err})") from None


def _bytes_from_codecs(text, encoding="latin1"):
    # Protocol-2 pickles spell a bytes object as _codecs.encode(str, 'latin1'); nothing else.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return text.encode("latin1")


def _numeric_dtype(spec, align=False, copy=True):
    """numpy.dtype restricted to numbers: an object dtype would let a pickle build arbitrary objects."""
    dtype = np.dtype(spec)
    if dtype.kind not in "fiucb" or dtype.hasobject:
        raise pickle.UnpicklingError(f"array of non-numeric dtype {spec!r}")
    return dtype


def _reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays may be rebuilt")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


CONTAINER_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "tuple"): tuple,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _bytes_from_codecs,
}

NUMPY_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy.core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numeric_dtype,
}


def _check_no_objects(obj, path):
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UserError(f"{path}: refused to load: it holds arrays of Python objects")
    elif isinstance(obj, dict):
        for value in obj.values():
            _check_no_objects(value, path)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _check_no_objects(value, path)
    return obj


# ----------------------------------------------------------------------------------------------
# PyTorch files.

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _TensorRef:
    """A tensor whose storage is read later (the legacy format stores data after the pickle)."""

    def __init__(self, storage_key, offset, size, stride):
        self.storage_key, self.offset, self.size, self.stride = storage_key, offset, tuple(size), tuple(stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
    return data


TORCH_GLOBALS = {
    **CONTAINER_GLOBALS,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _storage_array(raw, dtype):
    if dtype == "bfloat16":  # no numpy bfloat16: widen to float32 bit-exactly
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, dtype)


def _materialise(obj, storages, path):
    """Replace every _TensorRef in the unpickled tree by a numpy array (size, stride and offset honoured)."""
    if isinstance(obj, _TensorRef):
        storage = storages[obj.storage_key]
        if not obj.size:
            return np.array(storage[obj.offset])
        extent = obj.offset + 1 + sum((n - 1) * s for n, s in zip(obj.size, obj.stride) if n > 0)
        if min(obj.size) > 0 and (extent > storage.size or min(obj.stride) < 0):
            raise UserError(f"{path}: a tensor reaches outside its storage (the file is corrupt)")
        view = np.lib.stride_tricks.as_strided(storage[obj.offset:], shape=obj.size,
                                               strides=[s * storage.itemsize for s in obj.stride])
        return np.ascontiguousarray(view)  # a C-ordered copy (np.array would keep a transposed order)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v, storages, path)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v, storages, path) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, storages, path) for v in obj)
    return obj


def _read_torch_zip(path, allowed):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise UserError(f"{path}: a zip file but not a PyTorch checkpoint (no data.pkl inside)")
        prefix = pkl[0][: -len("data.pkl")]
        if prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() != b"little":
            raise UserError(f"{path}: big-endian PyTorch checkpoints are not supported")
        storages, wanted = {}, {}

        def persistent_load(pid):
            kind, storage_type, key, _location, numel = pid[:5]
            if kind != "storage" or not isinstance(storage_type, _StorageType):
                raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
            wanted[key] = (storage_type.dtype, numel)
            return key

        tree = restricted_load(archive.read(pkl[0]), path, allowed, persistent_load)
        for key, (dtype, numel) in wanted.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise UserError(f"{path}: checkpoint is truncated (tensor data {key} missing)")
            array = _storage_array(archive.read(member), dtype)
            if array.size < numel:
                raise UserError(f"{path}: checkpoint is truncated (tensor data {key} too short)")
            storages[key] = array
    return _materialise(tree, storages, path)


def _read_torch_legacy(path, allowed):
    with open(path, "rb") as f:
        header = [restricted_load(f, path, {}) for _ in range(3)]  # magic number, protocol, system info
        if header[0] != _LEGACY_MAGIC or not isinstance(header[2], dict):
            raise UserError(f"{path}: not a PyTorch checkpoint (unknown header)")
        if not header[2].get("little_endian", True):
            raise UserError(f"{path}: big-endian PyTorch checkpoints are not supported")
        wanted, views = {}, {}

        def persistent_load(pid):
            kind, storage_type, root_key, _location, numel = pid[:5]
            view = pid[5] if len(pid) > 5 else None
            if kind != "storage" or not isinstance(storage_type, _StorageType):
                raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
            wanted.setdefault(root_key, storage_type.dtype)
            if view is not None:  # a view into another storage: (view key, offset, size)
                view_key, offset, size = view
                views[view_key] = (root_key, offset, size)
                return view_key
            return root_key

        tree = restricted_load(f, path, allowed, persistent_load)
        keys = restricted_load(f, path, {})
        storages = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = wanted.get(key, np.float32)
            itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
            raw = f.read(numel * itemsize)
            if len(raw) != numel * itemsize:
                raise UserError(f"{path}: checkpoint is truncated (tensor data {key} too short)")
            storages[key] = _storage_array(raw, dtype)
        for view_key, (root_key, offset, size) in views.items():
            storages[view_key] = storages[root_key][offset:offset + size]
    return _materialise(tree, storages, path)


def read_torch_file(path, numpy_arrays=False):
    """Read a PyTorch checkpoint (zip or legacy container) into containers of numpy arrays.

    numpy_arrays: also admit numpy arrays pickled inside the file (numpy's array reconstruction and
    numeric dtypes, nothing more), as `torch.save` writes a dict holding numpy arrays."""
    if not os.path.isfile(path):
        raise UserError(f"weights file not found: {path}")
    allowed = {**TORCH_GLOBALS, **NUMPY_GLOBALS} if numpy_arrays else TORCH_GLOBALS
    tree = _read_torch_zip(path, allowed) if zipfile.is_zipfile(path) else _read_torch_legacy(path, allowed)
    return _check_no_objects(tree, path)


# ----------------------------------------------------------------------------------------------
# Paddle files (.pdparams, .pdopt, our checkpoints).

# paddle.save's own bookkeeping entry (tensor name -> structured name) in every saved dict.
_PADDLE_NAME_TABLE = "StructuredToParameterName@@"


def _tensors_to_arrays(obj):
    """paddle.save writes a tensor as (name, ndarray) or a bare ndarray; give back plain arrays."""
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray):
        return obj[1]
    if isinstance(obj, dict):
        return type(obj)((k, _tensors_to_arrays(v)) for k, v in obj.items() if k != _PADDLE_NAME_TABLE)
    if isinstance(obj, list):
        return [_tensors_to_arrays(v) for v in obj]
    return obj


def read_paddle_file(path):
    """Read a file written by `paddle.save` (state dicts, optimizer states, our checkpoints)."""
    if not os.path.isfile(path):
        raise UserError(f"weights file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    tree = restricted_load(data, path, {**CONTAINER_GLOBALS, **NUMPY_GLOBALS})
    return _tensors_to_arrays(_check_no_objects(tree, path))


def is_torch_file(path):
    """A zip container, or the legacy stream that starts with a pickled long (LONG1 opcode)."""
    with open(path, "rb") as f:
        head = f.read(16)
    return head.startswith(b"PK") or head[2:3] == b"\x8a"


def read_checkpoint(path):
    """Read a PyTorch or Paddle weight file, whatever its extension says: (content, 'torch' | 'paddle')."""
    if not os.path.isfile(path):
        raise UserError(f"weights file not found: {path}")
    if is_torch_file(path):
        return read_torch_file(path), "torch"
    return read_paddle_file(path), "paddle"


# ----------------------------------------------------------------------------------------------
# What a network's files look like.

def _batchnorm_renames(state):
    """torch BatchNorm keys -> paddle's (`_mean`, `_variance`); num_batches_tracked has no use."""
    out = collections.OrderedDict()
    for key, value in state.items():
        if key.endswith(".num_batches_tracked"):
            continue
        if key.endswith(".running_mean"):
            key = key[: -len("running_mean")] + "_mean"
        elif key.endswith(".running_var"):
            key = key[: -len("running_var")] + "_variance"
        out[key] = value
    return out


@dataclass(frozen=True)
class WeightKind:
    """The files of one network.

    name: for people ("GPEN generator"). markers: keys every state dict of this network has.
    hint: which file is expected, said when another one is given. entries: where a checkpoint dict nests
    the state dict (tried in order when no key is asked for). transposed: torch Linear weights (out, in)
    that our modules hold as paddle's (in, out). batchnorm: rename torch BatchNorm statistics.
    prefix: stripped from every key when all keys carry it (DataParallel's `module.`).
    """
    name: str
    markers: tuple
    hint: str = ""
    entries: tuple = ()
    transposed: tuple = ()
    batchnorm: bool = False
    prefix: str = "module."

    def matches(self, state):
        return all(k in state for k in self.markers)

    def to_paddle(self, state):
        """A torch state dict of this network in our layout (float tensors become float32)."""
        state = collections.OrderedDict(
            (k, v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v) for k, v in state.items())
        for key in self.transposed:
            state[key] = np.ascontiguousarray(state[key].T)
        return _batchnorm_renames(state) if self.batchnorm else state


@dataclass
class Weights:
    """A state dict read from a file, in our layout, and what the file says about it."""
    state: dict                 # name -> numpy array
    path: str
    framework: str              # 'torch' or 'paddle'
    key: str = None             # the checkpoint entry the state came from, if any
    stored: dict = None         # what a training checkpoint of ours says about itself (STORED_FACTS)


# What our training checkpoints store beside the networks (trainer/checkpoint.py), handed to the loaders.
STORED_FACTS = ("config", "architecture", "iteration")


def _is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, np.ndarray) for v in obj.values())


def _strip_prefix(state, prefix):
    if prefix and state and all(k.startswith(prefix) for k in state):
        return collections.OrderedDict((k[len(prefix):], v) for k, v in state.items())
    return collections.OrderedDict(state)


def select_state_dict(obj, path, kind, key=None):
    """Pick the state dict out of a file's content: a plain state dict, or one entry of a checkpoint dict
    (`key`, else the first of kind.entries present). Returns (state, key used or None)."""
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            have = ", ".join(sorted(map(str, obj))) if isinstance(obj, dict) else type(obj).__name__
            raise UserError(f"{path}: has no entry '{key}' (it has: {have})")
        obj = obj[key]
    elif not _is_state_dict(obj) and isinstance(obj, dict):
        for candidate in kind.entries:
            if candidate in obj and _is_state_dict(obj[candidate]):
                key, obj = candidate, obj[candidate]
                break
    if not _is_state_dict(obj):
        entries = f" (looked for {', '.join(kind.entries)})" if kind.entries and key is None else ""
        raise UserError(f"{path}: holds no state dict of tensors" + (f" under '{key}'" if key else entries)
                        + "; pass --key for a training checkpoint")
    return _strip_prefix(obj, kind.prefix), key


def read_state_dict(path, kind, key=None):
    """Read `path` (.pth of either container, or .pdparams / our checkpoints) as weights of `kind`.

    Returns `Weights` with the state in our layout, ready for `set_state_dict`. A file of another
    network is refused with one line that says what was expected (kind.hint).
    """
    content, framework = read_checkpoint(path)
    state, used_key = select_state_dict(content, path, kind, key)
    if not kind.matches(state):
        missing = next(k for k in kind.markers if k not in state)
        raise UserError(f"{path}: not {kind.name} weights (no '{missing}'; its first key is '{next(iter(state))}')"
                        + (f"; {kind.hint}" if kind.hint else ""))
    if framework == "torch":
        state = kind.to_paddle(state)
    stored = {}
    if used_key is not None and isinstance(content, dict):
        stored = {k: content[k] for k in STORED_FACTS if k in content}
    return Weights(state, path, framework, used_key, stored)


def identify(state, kinds):
    """The first of `kinds` whose markers `state` has, or None."""
    return next((kind for kind in kinds if kind.matches(state)), None)


def check_state_dict(state, expected, path, what, hint):
    """`state` must hold exactly the keys of `expected` (name -> array or tensor) with the same shapes;
    otherwise one UserError names the file, the first offending key and both shapes, and `hint`."""
    for key, value in expected.items():
        if key not in state:
            raise UserError(f"{path}: {what} weights lack '{key}' (shape {list(value.shape)}); {hint}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserError(f"{path}: {what} weight '{key}' has shape {list(state[key].shape)}, "
                            f"expected {list(value.shape)}; {hint}")
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        raise UserError(f"{path}: unexpected key '{unexpected[0]}' (shape {list(state[unexpected[0]].shape)}) "
                        f"for {what} ({len(unexpected)} unexpected in all); {hint}")
