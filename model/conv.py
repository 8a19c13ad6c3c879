"""The convolution every GPEN layer calls: oneDNN's on the CPU in dygraph, Paddle's conv2d everywhere else.

Paddle 3.3's dygraph CPU conv2d is a single-threaded im2col copy plus one GEMM; oneDNN's direct convolution
(which PyTorch runs, and Paddle's own inference predictor) is 2-4x faster on GPEN's layers, forward and
backward. `model/csrc/onednn_conv2d.cc` makes it a Paddle custom op with a gradient and a second-order
gradient (R1 and the path-length penalty differentiate gradients of the discriminator and the generator),
all three made of oneDNN's forward, backward-data and backward-weights convolutions. Unlike Paddle's
conv2d double grad, which drops the output-gradient term fed by a filter gradient (README, "Paddle facts"),
this one is exact.

The extension is compiled once per machine, Paddle version and source (about 25 s, with the C++ compiler
and oneDNN's headers: `pip install --no-deps -r requirements-onednn.txt`), into GPEN_EXTENSION_DIR (default
~/.cache/gpen-paddle) and linked against the oneDNN library inside the Paddle wheel. Static graphs
(export, to_static) and GPUs always use F.conv2d. GPEN_CONV=paddle selects F.conv2d everywhere (for
comparison); GPEN_CONV=onednn makes a missing extension an error instead of a one-line notice and a fallback.
"""
import contextlib
import fcntl
import hashlib
import os
import sys
import sysconfig
import warnings

import paddle
import paddle.nn.functional as F

from utils.errors import UserError

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "onednn_conv2d.cc")
OP = "gpen_onednn_conv2d"
MODES = ("auto", "onednn", "paddle")

_state = {"loaded": None, "why_not": None}  # loaded: True / False once tried
_told = [False]  # the fallback notice is printed once per process


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d(x, weight, bias, stride=stride, padding=padding); padding is an int, (pad_h, pad_w) or
    (top, bottom, left, right)."""
    if not _use_onednn(x):
        return F.conv2d(x, weight, bias=bias, stride=stride, padding=padding)
    needs = (0 if x.stop_gradient else 1) | (0 if weight.stop_gradient else 2)  # gradients worth computing
    out = _run_onednn(x, weight, int(stride), _four_pads(padding), needs)
    if bias is None:
        return out
    # A row broadcast on the (N·O, H·W) view: Paddle's CPU broadcast over (N, H, W) is 3-7x slower.
    n, channels, h, w = out.shape
    return (out.reshape([n * channels, h * w]) + bias.tile([n]).reshape([-1, 1])).reshape(out.shape)


def mode():
    value = os.environ.get("GPEN_CONV", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise UserError(f"GPEN_CONV={value!r} is not one of {', '.join(MODES)}")
    return value


def onednn_available():
    """Whether the oneDNN ops are (or can now be) loaded; the reason they are not is `why_not()`."""
    if _state["loaded"] is None:
        try:
            _load_extension()
            _state["loaded"] = True
        except _Unavailable as reason:
            _state["loaded"], _state["why_not"] = False, str(reason)
    return _state["loaded"]


def why_not():
    return _state["why_not"]


def _use_onednn(x):
    if not paddle.in_dynamic_mode() or not x.place.is_cpu_place() or x.dtype != paddle.float32:
        return False
    chosen = mode()
    if chosen == "paddle":
        return False
    if onednn_available():
        return True
    if chosen == "onednn":
        raise UserError(f"GPEN_CONV=onednn but the oneDNN convolution cannot be used: {why_not()}")
    if not _told[0]:
        _told[0] = True
        print(f"conv: using Paddle's slower CPU conv2d ({why_not()})", file=sys.stderr)
    return False


def _run_onednn(x, weight, stride, pads, needs):
    out = paddle._C_ops._run_custom_op(OP, x, weight, stride, pads, needs)
    return out[0] if isinstance(out, (list, tuple)) else out


def _four_pads(padding):
    if isinstance(padding, int):
        return [padding] * 4
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        return [padding[0], padding[0], padding[1], padding[1]]
    if len(padding) == 4:
        return padding
    raise ValueError(f"padding must be an int, 2 or 4 ints, not {padding}")


class _Unavailable(Exception):
    pass


def _headers():
    """The include directory holding oneapi/dnnl/dnnl.hpp (the Paddle wheel ships only forwarding stubs)."""
    candidates = [os.environ.get("GPEN_ONEDNN_INCLUDE", ""), os.path.join(sys.prefix, "include"),
                  os.path.join(sysconfig.get_paths()["data"], "include")]
    for directory in candidates:
        if directory and os.path.isfile(os.path.join(directory, "oneapi", "dnnl", "dnnl.hpp")):
            return directory
    raise _Unavailable("oneDNN's headers are not installed: pip install --no-deps -r requirements-onednn.txt")


def _library_dir():
    libs = os.path.join(os.path.dirname(paddle.__file__), "libs")
    if not os.path.isfile(os.path.join(libs, "libdnnl.so.3")):
        raise _Unavailable(f"this Paddle build has no oneDNN library ({libs}/libdnnl.so.3)")
    return libs


def _load_extension():
    if not sys.platform.startswith("linux"):
        raise _Unavailable("the oneDNN extension is built on Linux only")
    headers, libs = _headers(), _library_dir()
    with open(SOURCE, "rb") as handle:
        digest = hashlib.sha256(handle.read())
    with open(os.path.join(headers, "oneapi", "dnnl", "dnnl_version.h"), "rb") as handle:
        digest.update(handle.read())
    digest.update(f"{paddle.__version__} {sys.version}".encode())
    name = "gpen_onednn_conv2d_" + digest.hexdigest()[:12]
    root = os.path.abspath(os.environ.get("GPEN_EXTENSION_DIR") or
                           os.path.join(os.path.expanduser("~"), ".cache", "gpen-paddle"))
    library = os.path.join(root, name, name + ".so")
    from paddle.utils.cpp_extension import load
    from paddle.utils.cpp_extension.extension_utils import load_op_meta_info_and_register_op
    try:
        os.makedirs(root, exist_ok=True)
        with _exclusive(os.path.join(root, name + ".lock")):
            if os.path.isfile(library):
                load_op_meta_info_and_register_op(library)
                return
            print(f"conv: compiling the oneDNN convolution once into {root} (about 25 s)", file=sys.stderr)
            with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
                warnings.simplefilter("ignore")
                load(name=name, sources=[SOURCE], extra_include_paths=[headers],
                     extra_cxx_cflags=["-O2"], build_directory=root, verbose=False,
                     extra_ldflags=[f"-L{libs}", "-l:libdnnl.so.3", f"-Wl,-rpath,{libs}"])
    except Exception as error:  # a compiler error, a missing compiler, an unwritable cache: fall back
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise _Unavailable(f"building {SOURCE} into {root} failed: {first_line[:300]}") from error


@contextlib.contextmanager
def _exclusive(path):
    """One process builds; the others wait for it and then load what it built."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
