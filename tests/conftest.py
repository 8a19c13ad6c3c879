"""Test set-up: CPU threads and MKL's kernel choice are fixed before anything imports paddle;
`need_shared` locates the read-only test material beside the repo; `tiny_generator_weights` is the small
GPEN the test.py end-to-end tests evaluate.

The parity evidence cannot vanish silently: without ../shared a test that needs it skips with a reason and
the run's last line counts those skips; with GPEN_REQUIRE_SHARED=1 (CI) a missing ../shared stops the run
with one line, and a missing part of it fails each test that needs it, in one line.
Tests that only need some real faces use the repo's own samples, EXAMPLES (examples/README.md).
"""
import os
from pathlib import Path

import pytest

from utils.runtime import prepare_cpu

prepare_cpu(2, keep_freed_memory=False)  # the suite is one long process: glibc's defaults bound its memory

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EXAMPLES = ROOT / "examples"   # train/ (10 FFHQ faces), test/ (8 CelebA-HQ faces), photo/solvay_1927.jpg
REQUIRE_SHARED = os.environ.get("GPEN_REQUIRE_SHARED", "") not in ("", "0")
SHARED_SKIP = "needs the shared test material ../shared/"   # every such skip reason starts with this
_MISSING = "GPEN_REQUIRE_SHARED=1 but ../shared/"            # and every such failure with this


def need_shared(*parts):
    """Path of ../shared/<parts>. When it is absent the calling test skips (e.g. on a fresh clone), or
    fails in one line under GPEN_REQUIRE_SHARED=1."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        name = "/".join(parts)
        if REQUIRE_SHARED:
            pytest.fail(f"{_MISSING}{name} is missing ({path})", pytrace=False)
        pytest.skip(f"{SHARED_SKIP}{name}, which is not beside this clone")
    return path


def pytest_configure(config):
    if REQUIRE_SHARED and not SHARED.is_dir():
        raise pytest.UsageError(f"GPEN_REQUIRE_SHARED=1 but the shared test material is not beside this clone "
                                f"({SHARED} is missing); the parity tests need it (unset the variable to skip them)")


_for_want_of_shared = []   # node ids of the tests (and modules) skipped, or failed, for want of ../shared


def _count(report):
    marker = _MISSING if REQUIRE_SHARED else SHARED_SKIP
    if (report.failed if REQUIRE_SHARED else report.skipped) and marker in str(report.longrepr):
        _for_want_of_shared.append(report.nodeid)


def pytest_runtest_logreport(report):
    _count(report)   # a test skips (or fails) once, at set-up or in its call


def pytest_collectreport(report):
    _count(report)   # a whole module skipped at import


def pytest_unconfigure(config):
    # pytest prints its summary line ("N passed, M skipped in T s") at the end of the session; this comes
    # after it, so that it is the run's last line.
    count = len(_for_want_of_shared)
    tests = f"{count} test{'' if count == 1 else 's'}"
    if REQUIRE_SHARED:
        line = f"{tests} failed for want of ../shared (GPEN_REQUIRE_SHARED=1)"
    else:
        line = (f"{tests} skipped for want of ../shared (the test material beside the clone: fixtures from "
                f"the authors' code, real faces); GPEN_REQUIRE_SHARED=1 makes them fail")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


def need_mtcnn_package():
    """Skip the calling test unless the `mtcnn` package (the default detector's weights, with lz4) is installed."""
    pytest.importorskip("lz4", reason="the MTCNN weights come with the `mtcnn` package: pip install mtcnn==1.0.0")
    from faces.mtcnn_weights import default_weight_dir
    from utils.errors import UserError

    try:
        default_weight_dir()
    except UserError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def tiny_generator_weights(tmp_path_factory):
    """A 64-px GPEN (narrow 0.0625) saved as .pdparams, its encoder features let through as in a trained
    model (the noise weights start at 0)."""
    import paddle

    from model import FullGenerator

    paddle.seed(7)
    generator = FullGenerator(64, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.0625)
    for layer in generator.generator.convs:
        layer.noise.weight.set_value(paddle.to_tensor([0.5]))
    path = tmp_path_factory.mktemp("g") / "G.pdparams"
    paddle.save(generator.state_dict(), str(path))
    return str(path)
