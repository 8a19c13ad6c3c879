"""utils.runtime: the process set-up every entry script runs before importing paddle.

Freed memory kept for reuse (keep_freed_memory) is checked by what it is for: a large block freed and
allocated again is not page-faulted in a second time. Each case runs in a fresh process, as an entry
script does, and counts the minor page faults of touching the second block.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK_MB = 256

# malloc a block, touch it, free it; malloc and touch again, printing the page faults of the second touch.
PROBE = f"""
import ctypes, ctypes.util, resource, sys
sys.path.insert(0, {str(ROOT)!r})
from utils.runtime import prepare_cpu
prepare_cpu(1, keep_freed_memory={{keep}})
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = {BLOCK_MB} << 20
block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = libc.malloc(size); ctypes.memset(block, 1, size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_touch_faults(keep, malloc_setting=None):
    env = dict(os.environ)
    env.pop("GPEN_MALLOC", None)
    env.pop("GLIBC_TUNABLES", None)
    if malloc_setting:
        env["GPEN_MALLOC"] = malloc_setting
    out = subprocess.run([sys.executable, "-c", PROBE.replace("{keep}", str(keep))], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings exist on Linux only")
def test_freed_memory_is_kept_for_reuse_unless_asked_not_to():
    pages = (BLOCK_MB << 20) // 4096
    system = _second_touch_faults(False)       # glibc's defaults
    if system < pages // 4:
        pytest.skip(f"this C library reuses a freed {BLOCK_MB} MB block by itself ({system} faults)")
    kept = _second_touch_faults(True)          # the entry scripts' default
    assert kept < pages // 100, f"a freed {BLOCK_MB} MB block was faulted in again: {kept} faults"
    assert _second_touch_faults(True, "system") > pages // 4, "GPEN_MALLOC=system did not restore glibc's defaults"
    assert _second_touch_faults(False, "keep") < pages // 100, "GPEN_MALLOC=keep did not keep freed memory"
