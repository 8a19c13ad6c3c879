"""Write PyTorch-format checkpoints without torch, for tests: both containers (zip, and the pre-1.6
raw pickle stream), float32/float16 storages, nested containers. The pickle is emitted opcode by
opcode (protocol 2, as torch writes it), so tests can also craft pickles that ask for other globals."""
import io
import pickle
import struct
import zipfile

import numpy as np

_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float16): "HalfStorage",
            np.dtype(np.float64): "DoubleStorage", np.dtype(np.int64): "LongStorage"}


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text):
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value):
    if -2 ** 31 <= value < 2 ** 31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


class StridedView:
    """A tensor that is a view into a larger storage: `base` (1-D) is written as the storage and the
    tensor is rebuilt from it with `offset`, `shape` and `strides` (in elements), as torch saves a
    transposed or sliced tensor without copying it."""

    def __init__(self, base, offset, shape, strides):
        self.base, self.offset, self.shape, self.strides = np.ascontiguousarray(base).ravel(), offset, shape, strides

    def expected(self):
        """The array torch would give back: the view itself."""
        itemsize = self.base.itemsize
        return np.lib.stride_tricks.as_strided(self.base[self.offset:], shape=self.shape,
                                               strides=[s * itemsize for s in self.strides]).copy()


class _Writer:
    def __init__(self, legacy):
        self.legacy = legacy
        self.storages = []  # (key, array)

    def emit(self, obj):
        if isinstance(obj, np.ndarray):
            return self.tensor(obj)
        if isinstance(obj, StridedView):
            return self.tensor(obj.base, obj.offset, obj.shape, obj.strides)
        if obj is None:
            return b"N"
        if obj is True or obj is False:
            return b"\x88" if obj else b"\x89"
        if isinstance(obj, int):
            return _int(obj)
        if isinstance(obj, float):
            return b"G" + struct.pack(">d", obj)
        if isinstance(obj, str):
            return _str(obj)
        if isinstance(obj, tuple):
            return b"(" + b"".join(self.emit(v) for v in obj) + b"t"
        if isinstance(obj, list):
            return b"](" + b"".join(self.emit(v) for v in obj) + b"e"
        if isinstance(obj, dict):
            items = b"".join(self.emit(k) + self.emit(v) for k, v in obj.items())
            head = _global("collections", "OrderedDict") + b")R" if type(obj) is not dict else b"}"
            return head + (b"(" + items + b"u" if obj else b"")
        raise TypeError(type(obj))

    def tensor(self, array, offset=0, shape=None, strides=None):
        array = np.ascontiguousarray(array)
        shape = array.shape if shape is None else shape
        strides = [s // array.itemsize for s in array.strides] if strides is None else strides
        key = str(len(self.storages))
        self.storages.append((key, array))
        pid = [_str("storage"), _global("torch", _STORAGE[array.dtype]), _str(key), _str("cpu"), _int(array.size)]
        if self.legacy:
            pid.append(b"N")  # no view
        persistent = b"(" + b"".join(pid) + b"tQ"
        size = b"(" + b"".join(_int(s) for s in shape) + b"t"
        stride = b"(" + b"".join(_int(s) for s in strides) + b"t"
        hooks = _global("collections", "OrderedDict") + b")R"
        return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + persistent + _int(offset) + size + stride
                + b"\x89" + hooks + b"tR")


def pickle_bytes(obj, legacy=False):
    """The protocol-2 pickle torch would write for `obj`, and the storages it refers to."""
    writer = _Writer(legacy)
    return b"\x80\x02" + writer.emit(obj) + b".", writer.storages


def save_torch(obj, path, legacy=False, raw_pickle=None):
    """torch.save(obj, path) for containers of numpy arrays; `raw_pickle` replaces the main pickle."""
    data, storages = pickle_bytes(obj, legacy)
    if raw_pickle is not None:
        data = raw_pickle
    if not legacy:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("archive/data.pkl", data)
            archive.writestr("archive/byteorder", "little")
            for key, array in storages:
                archive.writestr(f"archive/data/{key}", array.tobytes())
            archive.writestr("archive/version", "3\n")
        return
    out = io.BytesIO()
    out.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
    out.write(pickle.dumps(1001, protocol=2))
    out.write(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
    out.write(data)
    out.write(pickle.dumps([key for key, _ in storages], protocol=2))
    for _, array in storages:
        out.write(struct.pack("<q", array.size))
        out.write(array.tobytes())
    with open(path, "wb") as f:
        f.write(out.getvalue())


def malicious_pickle(command):
    """A pickle that would run `command` through os.system when unpickled by an unrestricted loader."""
    return b"\x80\x02" + _global("os", "system") + b"(" + _str(command) + b"tR."
