"""Process set-up that must happen before `import paddle`.

Paddle reads its CPU thread count once, when it is imported, and its bundled MKL picks its kernels
once, when it is loaded. Every entry script therefore calls `prepare_cpu(threads)` before anything
else imports paddle (the config loader never imports it); `prepare_cpu` then imports it.
"""
import contextlib
import ctypes
import ctypes.util
import io
import os
import sys
import warnings

from utils.errors import UserError

# glibc's mallopt parameters (malloc.h) and the largest value it takes (an int).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_INT_MAX = 2 ** 31 - 1


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def prepare_cpu(threads=0, keep_freed_memory=True):
    """Set the CPU thread count, MKL's kernel choice and malloc's handling of freed memory, then import paddle.

    threads: CPU threads for Paddle's kernels; 0 uses every available core (Paddle alone would use 1
    unless OMP_NUM_THREADS is set). An OMP_NUM_THREADS already in the environment wins over 0.
    keep_freed_memory: the script's default for `set_malloc` (GPEN_MALLOC in the environment wins).
    """
    set_malloc(keep_freed_memory)
    if "paddle" in sys.modules:
        # Too late to change anything; say so instead of silently running with other settings.
        print("warning: paddle was imported before the CPU threads were set; "
              "the thread setting has no effect", file=sys.stderr)
        return
    if threads and threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(available_cores()))
    os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    # Paddle's bundled MKL (mklml) runs its slow generic GEMM path on AMD CPUs. This variable makes it
    # use its AVX2 kernels instead: measured 3.9x faster matmul and 2.9x faster conv2d on the 2-core
    # AMD EPYC of our CI; Intel CPUs ignore it. A value already in the environment wins.
    os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    # Paddle prints a warning for OMP_NUM_THREADS > 1 that concerns data-parallel CPU training only.
    os.environ.setdefault("GLOG_minloglevel", "2")
    # Importing paddle warns about a missing ccache: it concerns compiling C++ extensions, which model/conv.py
    # does once per machine and announces itself.
    warnings.filterwarnings("ignore", message="No ccache found")
    _import_paddle_quietly()


# glibc's malloc_trim while freed blocks are kept (set once by set_malloc), else None.
_malloc_trim = None


def set_malloc(keep_freed_memory=True):
    """Let glibc's malloc keep freed blocks of up to 2 GB for reuse (True) or leave its defaults (False);
    GPEN_MALLOC=keep|system in the environment decides instead. Returns whether blocks are kept.

    Paddle's CPU allocator hands every tensor back to malloc as soon as it dies, and glibc maps blocks
    above its threshold (at most 32 MB by default) afresh each time and unmaps them on free, so every
    large activation and im2col buffer is page-faulted in again: measured here, GPEN-512's last 3x3
    convolution (a 1.2 GB im2col buffer) took 2.0-3.2 s inside a forward pass against 0.6 s once its
    buffer is reused, and the whole forward 7.5-9 s against 5-6 s. The price is memory the heap cannot
    hand back while fragmented: a training iteration keeps its peak bounded only because the trainer
    releases the freed pages after each phase (`release_freed_memory`); GPEN-512 at batch 2 then peaked
    at 17 GB against 13 GB with glibc's defaults (24 GB without the release) for an iteration 17 % faster;
    GPEN-1024 at batch 1 peaks at 19 GB against 15 GB. GPEN_MALLOC=system is the lower-memory choice.
    """
    global _malloc_trim
    setting = os.environ.get("GPEN_MALLOC", "keep" if keep_freed_memory else "system")
    if setting not in ("keep", "system"):
        raise UserError(f"GPEN_MALLOC={setting!r} in the environment; use keep or system")
    _malloc_trim = None
    if setting == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to set
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if mallopt(_M_MMAP_THRESHOLD, _INT_MAX) and mallopt(_M_TRIM_THRESHOLD, _INT_MAX):
        _malloc_trim = malloc_trim
    return _malloc_trim is not None


def release_freed_memory():
    """While freed blocks are kept (set_malloc), give their pages back to the system (glibc's
    malloc_trim); the next use of a block faults its pages in once. A no-op otherwise."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _import_paddle_quietly():
    """Import paddle, dropping the two lines it prints whenever OMP_NUM_THREADS > 1 (a warning about
    data-parallel CPU training with OpenBLAS that does not apply here); anything else still shows."""
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        import paddle  # noqa: F401
    for line in captured.getvalue().splitlines():
        if "OMP_NUM_THREADS" not in line:
            print(line, file=sys.stderr)


def select_device(device):
    """Return the Paddle device string for 'auto' | 'cpu' | 'gpu' and make it current."""
    import paddle

    if device == "auto":
        device = "gpu" if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() else "cpu"
    if device == "gpu" and not paddle.device.is_compiled_with_cuda():
        raise UserError("runtime.device=gpu but this Paddle is the CPU build; "
                        "install paddlepaddle-gpu or use runtime.device=cpu")
    paddle.set_device(device)
    return device
