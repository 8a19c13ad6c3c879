"""tests/conftest.py's guard of the parity evidence, on a throw-away test tree: without ../shared a test
that needs it skips with its reason and the run's last line counts it; with GPEN_REQUIRE_SHARED=1 the run
stops with one line when ../shared is missing, and such a test fails in one line when a part of it is."""
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

TESTS = '''
from conftest import need_shared


def test_needs_shared():
    assert need_shared("fixtures", "some_reference.npz").is_file()


def test_needs_nothing():
    assert 1 + 1 == 2
'''


@pytest.fixture
def tree(tmp_path):
    """tmp/repo/tests/{conftest.py, test_x.py} and no tmp/shared; a stand-in utils.runtime, so that the
    run does not import paddle (conftest's guard does not depend on it)."""
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "conftest.py", repo / "tests" / "conftest.py")
    (repo / "tests" / "test_x.py").write_text(TESTS)
    (repo / "utils").mkdir()
    (repo / "utils" / "__init__.py").write_text("")
    (repo / "utils" / "runtime.py").write_text("def prepare_cpu(threads=0, keep_freed_memory=True):\n    pass\n")
    (repo / "pytest.ini").write_text("[pytest]\ntestpaths = tests\npythonpath = .\naddopts = -ra -p no:cacheprovider\n")
    return repo


def pytest_run(repo, **env):
    environment = {k: v for k, v in os.environ.items() if k != "GPEN_REQUIRE_SHARED"}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=repo, env=environment,
                          capture_output=True, text=True, timeout=300)


def test_without_shared_the_skips_have_reasons_and_the_last_line_counts_them(tree):
    out = pytest_run(tree)
    assert out.returncode == 0, out.stdout
    lines = out.stdout.strip().splitlines()
    assert any("SKIPPED" in line and "../shared/fixtures/some_reference.npz" in line for line in lines)
    assert lines[-1].startswith("1 test skipped for want of ../shared")
    assert "1 passed, 1 skipped" in lines[-2]


def test_required_and_missing_stops_the_run_in_one_line(tree):
    out = pytest_run(tree, GPEN_REQUIRE_SHARED="1")
    assert out.returncode != 0
    text = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(text) == 1 and "GPEN_REQUIRE_SHARED=1" in text[0] and "shared" in text[0]


def test_required_and_partly_missing_fails_that_test_in_one_line(tree):
    (tree.parent / "shared" / "fixtures").mkdir(parents=True)
    out = pytest_run(tree, GPEN_REQUIRE_SHARED="1")
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    reasons = [line for line in lines if "is missing" in line and "some_reference.npz" in line]
    assert reasons and all("Traceback" not in line for line in lines)
    assert lines[-1] == "1 test failed for want of ../shared (GPEN_REQUIRE_SHARED=1)"
    assert "1 passed" in lines[-2]
