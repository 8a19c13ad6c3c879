"""Reading checkpoints safely and turning the authors' PyTorch weights into ours.

* `read_torch_file` reads a PyTorch checkpoint **without torch**: the zip container of torch >= 1.6
  and the older raw-pickle container (files saved before torch 1.6, like `model_ir_se50.pth` and
  pytorch-fid's Inception weights), float32, float16 and other tensor types.
* `read_paddle_file` reads a `.pdparams` / `.pdopt` / our training checkpoints.
* Both use a restricted unpickler: a checkpoint may only rebuild tensors, numpy arrays and plain
  containers. Anything else (a pickle asking for `os.system`, say) is refused before it can run.
* `load_state_dict` returns a state dict of numpy arrays in the layout of *our* modules, from either
  kind of file, for one of the known networks (`KINDS`). The layout changes from the authors' files
  are listed once, in `KINDS`.

Nothing here imports paddle; callers turn the arrays into tensors with `set_state_dict`.
"""
import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from utils.errors import UserError

# ----------------------------------------------------------------------------------------------
# The restricted unpickler.

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


def _bytes_from_codecs(text, encoding="latin1"):
    # Protocol-2 pickles spell a bytes object as _codecs.encode(str, 'latin1'); nothing else.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return text.encode("latin1")


_TORCH_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("_codecs", "encode"): _bytes_from_codecs,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}

_NUMPY_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy.core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "tuple"): tuple,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _bytes_from_codecs,
}


class _Refused(Exception):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream, allowed, persistent_load=None):
        super().__init__(stream)
        self._allowed = allowed
        self._persistent = persistent_load

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent(pid)


def _unpickle(data, path, allowed, persistent_load=None):
    try:
        return _RestrictedUnpickler(io.BytesIO(data) if isinstance(data, bytes) else data,
                                    allowed, persistent_load).load()
    except _Refused as err:
        raise UserError(f"{path}: refused to load: its pickle asks for '{err}', which is not a tensor or a plain "
                        f"container (a checkpoint must not run code); re-save it as a plain state dict") from None
    except UserError:
        raise
    except Exception as err:  # corrupt or truncated data
        raise UserError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None


# ----------------------------------------------------------------------------------------------
# PyTorch files.

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _storage_array(raw, dtype):
    if dtype == "bfloat16":  # no numpy bfloat16: widen to float32 bit-exactly
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, dtype)


def _materialise(obj, storages):
    """Replace every _TensorRef in the unpickled tree by a numpy array."""
    if isinstance(obj, _TensorRef):
        storage = storages[obj.storage_key]
        itemsize = storage.itemsize
        if not obj.size:
            return np.array(storage[obj.offset])
        view = np.lib.stride_tricks.as_strided(storage[obj.offset:], shape=obj.size,
                                               strides=[s * itemsize for s in obj.stride])
        return np.array(view)  # contiguous copy
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v, storages)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v, storages) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, storages) for v in obj)
    return obj


def _read_torch_zip(path):
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

        tree = _unpickle(archive.read(pkl[0]), path, _TORCH_GLOBALS, persistent_load)
        for key, (dtype, numel) in wanted.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise UserError(f"{path}: checkpoint is truncated (tensor data {key} missing)")
            array = _storage_array(archive.read(member), dtype)
            if array.size < numel:
                raise UserError(f"{path}: checkpoint is truncated (tensor data {key} too short)")
            storages[key] = array
    return _materialise(tree, storages)


def _read_torch_legacy(path):
    with open(path, "rb") as f:
        header = [_unpickle(f, path, {}) for _ in range(3)]  # magic number, protocol, system info
        if header[0] != _LEGACY_MAGIC:
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

        tree = _unpickle(f, path, _TORCH_GLOBALS, persistent_load)
        keys = _unpickle(f, path, {})
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
    return _materialise(tree, storages)


def read_torch_file(path):
    """Read a PyTorch checkpoint (zip or legacy container) into containers of numpy arrays."""
    if not os.path.isfile(path):
        raise UserError(f"weights file not found: {path}")
    if zipfile.is_zipfile(path):
        return _read_torch_zip(path)
    return _read_torch_legacy(path)


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
    tree = _unpickle(data, path, _NUMPY_GLOBALS)
    if _has_object_arrays(tree):
        raise UserError(f"{path}: refused to load: it holds arrays of Python objects")
    return _tensors_to_arrays(tree)


def _has_object_arrays(obj):
    if isinstance(obj, np.ndarray):
        return obj.dtype == object
    if isinstance(obj, dict):
        return any(_has_object_arrays(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_object_arrays(v) for v in obj)
    return False


def read_checkpoint(path):
    """Read a PyTorch or Paddle checkpoint, whatever its extension says.

    Returns (content, framework) with framework 'torch' or 'paddle'.
    """
    if not os.path.isfile(path):
        raise UserError(f"weights file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    # torch: a zip container, or the legacy stream that starts with a pickled long (LONG1 opcode).
    if head.startswith(b"PK") or head[2:3] == b"\x8a":
        return read_torch_file(path), "torch"
    return read_paddle_file(path), "paddle"


# ----------------------------------------------------------------------------------------------
# Known networks: how to recognise their state dicts, and the layout changes from the authors'.

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


class Kind:
    """A network whose weights we convert: how to recognise it and how its layout changes."""

    def __init__(self, name, marker_keys, transposed=(), batchnorm=False):
        self.name = name
        self.marker_keys = marker_keys      # all present <=> this network
        self.transposed = transposed        # torch Linear weights (out, in) that become paddle's (in, out)
        self.batchnorm = batchnorm

    def matches(self, state):
        return all(k in state for k in self.marker_keys)

    def to_paddle(self, state):
        # float16 / bfloat16 / float64 files (the fixtures store float16) become float32 parameters.
        state = collections.OrderedDict(
            (k, v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v) for k, v in state.items())
        for key in self.transposed:
            state[key] = np.ascontiguousarray(state[key].T)
        return _batchnorm_renames(state) if self.batchnorm else state


# GPEN's layers keep the authors' layouts (EqualLinear stores (out, in) and multiplies by its
# transpose itself), so their conversion is a copy; the two ported metric networks use paddle.nn
# Linear/BatchNorm layers.
KINDS = {
    "generator": Kind("generator", ("ecd0.0.0.weight", "generator.style.1.weight")),
    "discriminator": Kind("discriminator", ("convs.0.0.weight", "final_conv.0.weight", "final_linear.1.weight")),
    "inception": Kind("inception", ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight"),
                      transposed=("fc.weight",), batchnorm=True),
    "irse50": Kind("irse50", ("input_layer.0.weight", "output_layer.3.weight"),
                   transposed=("output_layer.3.weight",), batchnorm=True),
    # LPIPS (metric/lpips.py): torchvision's AlexNet (features.3 exists in neither VGG nor SqueezeNet;
    # its classifier is dropped by the metric, so its Linear layout does not matter) and the lpips
    # package's 1x1-conv heads (conv weights keep their layout).
    "alexnet": Kind("alexnet", ("features.0.weight", "features.3.weight", "features.10.weight")),
    "lpips_heads": Kind("lpips_heads", ("lin0.model.1.weight", "lin4.model.1.weight")),
}


def _strip_prefix(state, prefix="module."):
    if state and all(k.startswith(prefix) for k in state):
        return collections.OrderedDict((k[len(prefix):], v) for k, v in state.items())
    return state


def _is_state_dict(obj):
    return isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values())


def select_state_dict(obj, path, key=None):
    """Pick the state dict out of a file's content: a plain state dict, or one entry of a training
    checkpoint ({g, d, g_ema, g_optim, d_optim, ...}). Returns (state, key used or None)."""
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            have = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
            raise UserError(f"{path}: has no entry '{key}' (it has: {have})")
        obj = obj[key]
    elif not _is_state_dict(obj) and isinstance(obj, dict):
        for candidate in ("g_ema", "state_dict", "model", "params"):
            if candidate in obj and _is_state_dict(obj[candidate]):
                key, obj = candidate, obj[candidate]
                break
    if not _is_state_dict(obj):
        raise UserError(f"{path}: holds no state dict of tensors"
                        + (f" under '{key}'" if key else "") + "; pass --key for a training checkpoint")
    return _strip_prefix(collections.OrderedDict(obj)), key


def detect_kind(state):
    for kind in KINDS.values():
        if kind.matches(state):
            return kind.name
    return None


def load_state_dict(path, kind=None, key=None):
    """Read `path` (.pth of either container, or .pdparams) and return (state, kind name, key).

    The state is in our layout, ready for `set_state_dict`. `kind` restricts what is accepted
    ('generator', 'discriminator', 'inception', 'irse50'); a file of another network is refused.
    Files we wrote ourselves are already in our layout.
    """
    content, framework = read_checkpoint(path)
    if key is None and kind == "discriminator" and isinstance(content, dict) and "d" in content \
            and not _is_state_dict(content):
        key = "d"
    state, used_key = select_state_dict(content, path, key)
    found = detect_kind(state)
    if found is None:
        first = next(iter(state))
        raise UserError(f"{path}: not weights of a known network (first key '{first}'); "
                        f"expected a GPEN generator or discriminator, pytorch-fid's Inception, IR-SE50, "
                        f"torchvision's AlexNet or lpips's alex heads")
    if kind is not None and found != kind:
        raise UserError(f"{path}: holds {found} weights, but {kind} weights are needed here")
    if framework == "torch":
        state = KINDS[found].to_paddle(state)
    return state, found, used_key


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


# ----------------------------------------------------------------------------------------------
# Architecture from the shapes (GPEN_SPEC §1: ch(r) tables).

def _log2(n):
    return int(round(np.log2(n)))


def infer_generator_config(state):
    """size, style_dim, n_mlp, channel_multiplier, narrow of a FullGenerator state dict."""
    n_ecd = len({k.split(".")[0] for k in state if k.startswith("ecd")})
    size = 2 ** (n_ecd + 1)  # ecd0 .. ecd{log_size-2}
    style_dim = state["generator.style.1.weight"].shape[0]
    n_mlp = len({k.split(".")[2] for k in state if k.startswith("generator.style.") and k.endswith(".weight")})
    ch4 = state["generator.input.input"].shape[1]
    narrow = ch4 / 512  # ch(4) = int(512·narrow)
    channel_multiplier = _multiplier(state["ecd0.0.0.weight"].shape[0], size, narrow)
    isconcat = state["generator.conv1.activate.bias"].shape[0] == 2 * ch4  # concatenation doubles it
    return dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier,
                narrow=narrow, isconcat=isconcat)


def infer_discriminator_config(state):
    n_convs = len({k.split(".")[1] for k in state if k.startswith("convs.")})
    size = 2 ** (n_convs + 1)  # convs.0 (1x1 from RGB) + one ResBlock per halving down to 4
    narrow = state["final_conv.0.weight"].shape[0] / 512  # ch(4) = int(512·narrow)
    return dict(size=size, channel_multiplier=_multiplier(state["convs.0.0.weight"].shape[0], size, narrow),
                narrow=narrow)


def _multiplier(width, size, narrow):
    """channel_multiplier from the width at full resolution: ch(size) = int(base(size)·m·n)."""
    base = {64: 256, 128: 128, 256: 64, 512: 32, 1024: 16, 2048: 8}.get(size)
    if base is None:  # sizes <= 32 do not depend on the multiplier
        return 1
    for m in (1, 2, 3, 4, 8):
        if int(base * m * narrow) == width:
            return m
    return max(1, round(width / (base * narrow)))
