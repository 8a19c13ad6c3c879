"""test_tipc/: the config's line layout, the key:value parsing, compare_results.py's verdicts, prepare.sh's
data sources and its one-line failures, and the chain's failure accounting. The full lite chain itself runs
in CI as `bash test_tipc/prepare.sh ... && bash test_tipc/test_train_inference_python.sh ...` (~1.5 min)."""
import os
import shutil
import subprocess
import sys

import numpy as np
from conftest import ROOT

from utils.image_io import write_image

TIPC = ROOT / "test_tipc"
CONFIG = TIPC / "configs" / "GPEN" / "train_infer_python.txt"
COMPARE = [sys.executable, str(TIPC / "compare_results.py")]


def bash(script, env=None, cwd=ROOT):
    """Runs a bash snippet with common_func.sh loaded; returns the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(["bash", "-c", f"source {TIPC / 'common_func.sh'}\n{script}"], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_parser_handles_modes_equals_signs_and_environment():
    out = bash('func_parser_params "k:lite_train_lite_infer=-o train.log_freq=10|whole_infer=${TIPC_X}/a" '
               'lite_train_lite_infer\n'
               'func_parser_params "k:lite_train_lite_infer=1|whole_infer=${TIPC_X}/a" whole_infer\n'
               'func_parser_params "k:lite_train_lite_infer=1" whole_train_whole_infer\n'
               'func_parser_value "--img:C:/faces"\n'
               'echo "[$(func_set_params --x null)][$(func_set_params null 3)]$(func_set_params --x 3)"',
               env={"TIPC_X": "/data"})
    assert out.stdout.splitlines() == ["-o train.log_freq=10", "/data/a", "null", "C:/faces", "[][]--x=3"]


def test_status_check_writes_the_tipc_lines_and_returns_the_status(tmp_path):
    log = tmp_path / "results_python.log"
    out = bash(f'status_check 0 "python a.py" {log}; echo "rc $?"; status_check 2 "python b.py" {log}; echo "rc $?"')
    assert "rc 0" in out.stdout and "rc 2" in out.stdout
    assert log.read_text().splitlines() == ["Run successfully with command - python a.py!",
                                            "Run failed with command - python b.py!"]


def test_config_lines_sit_where_the_script_reads_them():
    # test_train_inference_python.sh reads by position; a line inserted or removed shifts every later key.
    lines = CONFIG.read_text().splitlines()
    keys = {index: line.split(":", 1)[0] for index, line in enumerate(lines)}
    expected = {1: "model_name", 2: "python", 3: "gpu_list", 5: "--config", 6: "--max_iter", 7: "--output",
                9: "--train_path", 10: "--test_path", 11: "train_model_name", 14: "trainer", 15: "norm_train",
                18: "eval", 19: "--weights", 23: "--save_dir", 24: "--model_path", 25: "norm_export",
                26: "whole_infer_weights", 27: "inference", 28: "--model_dir", 30: "--enable_mkldnn",
                31: "--cpu_threads", 33: "--use_tensorrt", 34: "--precision", 35: "--img", 37: "--benchmark",
                39: "expected_metrics"}
    assert {index: keys.get(index) for index in expected} == expected
    assert lines[15].split(":", 1)[1].startswith("train.py")
    expected_file = lines[39].split("lite_train_lite_infer=", 1)[1].split("|")[0]
    assert (ROOT / expected_file).is_file()


def make_lite_set(folder, source="shared"):
    for part, count in (("train", 3), ("test", 2)):
        (folder / part).mkdir(parents=True)
        for i in range(count):
            (folder / part / f"{i:05d}.png").write_bytes(f"{part}{i}".encode())
    (folder / "source.txt").write_text(source + "\n")


def results_for(data, psnr=7.0, tolerance=1.0):
    fingerprint = subprocess.run(COMPARE + ["--fingerprint", str(data)], capture_output=True, text=True,
                                 check=True).stdout.strip()
    path = data.parent / "expected.txt"
    path.write_text(f"# test\ndata shared {fingerprint}\nmetric shared eval PSNR {psnr} {tolerance}\n"
                    f"metric shared eval SSIM 0.1 0.05\nmetric shared infer PSNR {psnr} {tolerance}\n")
    return path


def compare(*args):
    return subprocess.run(COMPARE + [str(a) for a in args], capture_output=True, text=True)


def test_compare_passes_within_and_fails_outside_the_tolerance(tmp_path):
    data = tmp_path / "lite"
    make_lite_set(data)
    expected = results_for(data)
    log = tmp_path / "eval.log"
    log.write_text("evaluating...\nPSNR: 7.6000\nSSIM: 0.1200\n")
    ok = compare("--step", "eval", "--log", log, "--expected", expected, "--data", data)
    assert ok.returncode == 0 and ok.stdout.count(" ok") == 2
    log.write_text("PSNR: 8.2000\nSSIM: 0.1200\n")
    far = compare("--step", "eval", "--log", log, "--expected", expected, "--data", data)
    assert far.returncode == 1 and "eval PSNR on shared: 8.2000 (expected 7.0000 ± 1) MISMATCH" in far.stdout
    log.write_text("SSIM: 0.1200\n")  # the script died before printing its PSNR
    assert compare("--step", "eval", "--log", log, "--expected", expected, "--data", data).returncode == 1


def test_compare_checks_the_predictor_against_the_same_runs_evaluation(tmp_path):
    eval_log, infer_log = tmp_path / "eval.log", tmp_path / "infer.log"
    eval_log.write_text("PSNR: 7.0381\nSSIM: 0.0877\n")
    infer_log.write_text("result saved in : x.png  (degraded | restored | original, PSNR 6.05 dB)\n"
                         "PSNR: 7.0380 over 8 faces\n")
    assert compare("--step", "infer", "--log", infer_log, "--reference", eval_log).returncode == 0
    infer_log.write_text("PSNR: 7.3000 over 8 faces\n")  # within ±1 dB of the expected value, but a wrong export
    assert compare("--step", "infer", "--log", infer_log, "--reference", eval_log).returncode == 1
    assert compare("--step", "infer", "--log", infer_log, "--reference", eval_log,
                   "--precision", "fp16").returncode == 0


def test_compare_knows_which_data_sets_have_expected_values(tmp_path):
    data = tmp_path / "lite"
    make_lite_set(data)
    expected = results_for(data)
    log = tmp_path / "eval.log"
    log.write_text("PSNR: 7.0\nSSIM: 0.1\n")
    (data / "test" / "00000.png").write_bytes(b"another face")
    # prepare.sh built a known source, yet the content differs: the numbers cannot apply.
    changed = compare("--step", "eval", "--log", log, "--expected", expected, "--data", data)
    assert changed.returncode == 1 and "not a set with expected metrics" in changed.stdout
    # A folder of the user's own faces has no expected values: said, not failed.
    (data / "source.txt").write_text("GPEN_TIPC_DATA=/my/faces\n")
    custom = compare("--step", "eval", "--log", log, "--expected", expected, "--data", data)
    assert custom.returncode == 0 and "not compared" in custom.stdout


def fake_checkout(tmp_path):
    """A copy of test_tipc/ in a checkout with no ../shared beside it (utils/ linked for the image check)."""
    repo = tmp_path / "repo"
    (repo / "test_tipc").mkdir(parents=True)
    for name in ("common_func.sh", "prepare.sh"):
        shutil.copy(TIPC / name, repo / "test_tipc" / name)
    shutil.copytree(TIPC / "configs", repo / "test_tipc" / "configs")
    os.symlink(ROOT / "utils", repo / "utils")
    return repo


def prepare(repo, env):
    """prepare.sh lite_train_lite_infer in `repo` with only the GPEN_* variables given here."""
    env = dict({k: v for k, v in os.environ.items() if not k.startswith("GPEN_")}, **env)
    return subprocess.run(["bash", "test_tipc/prepare.sh", "test_tipc/configs/GPEN/train_infer_python.txt",
                           "lite_train_lite_infer"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def test_prepare_downloads_the_sample_faces_and_fails_in_one_line_without_any(tmp_path):
    repo = fake_checkout(tmp_path)
    offline = prepare(repo, {"GPEN_TIPC_SAMPLE_URL": f"file://{tmp_path}/nowhere"})
    assert offline.returncode == 1
    assert len(offline.stderr.strip().splitlines()) == 1 and "set GPEN_TIPC_DATA" in offline.stderr
    assert not (repo / "test_tipc" / "data" / "lite").exists()

    mirror = tmp_path / "ffhq-10"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        write_image(str(mirror / f"{i:05d}.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    fetched = prepare(repo, {"GPEN_TIPC_SAMPLE_URL": f"file://{mirror}"})
    assert fetched.returncode == 0, fetched.stderr
    lite = repo / "test_tipc" / "data" / "lite"
    assert len(os.listdir(lite / "train")) == 10 and sorted(os.listdir(lite / "test")) == [
        f"{i:05d}.png" for i in range(8)]
    assert (lite / "source.txt").read_text().strip() == "ffhq-10"


def test_prepare_takes_a_folder_of_faces_and_rejects_what_would_fail_later(tmp_path):
    repo = fake_checkout(tmp_path)
    faces = tmp_path / "faces"
    faces.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        write_image(str(faces / f"f{i:02d}.jpg"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    built = prepare(repo, {"GPEN_TIPC_DATA": str(faces)})
    assert built.returncode == 0, built.stderr
    lite = repo / "test_tipc" / "data" / "lite"
    assert len(os.listdir(lite / "train")) == 16 and len(os.listdir(lite / "test")) == 8

    write_image(str(faces / "zz_photo.jpg"), rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    for name in sorted(os.listdir(faces))[:12]:
        os.remove(faces / name)
    wide = prepare(repo, {"GPEN_TIPC_DATA": str(faces)})
    assert wide.returncode == 1 and wide.stderr.count("\n") == 1 and "zz_photo.jpg" in wide.stderr
    assert "48x32" in wide.stderr and not lite.exists()
    missing = prepare(repo, {"GPEN_TIPC_DATA": str(faces / "missing")})
    assert missing.returncode == 1 and "is not a folder" in missing.stderr


def test_whole_modes_name_what_is_missing_in_one_line(tmp_path):
    repo = fake_checkout(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPEN_")}
    out = subprocess.run(["bash", "test_tipc/prepare.sh", "test_tipc/configs/GPEN/train_infer_python.txt",
                          "whole_infer"], cwd=repo, env=dict(env, GPEN_CELEBA_HQ_DIR=str(tmp_path)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "GPEN_WEIGHTS" in out.stderr and "not set" in out.stderr and "is not a folder of images" in out.stderr


def test_a_failed_training_is_a_failed_line_and_a_non_zero_exit(tmp_path):
    lines = CONFIG.read_text().splitlines()
    lines[7] = f"--output:{tmp_path / 'output'}"
    lines[9] = f"--train_path:lite_train_lite_infer={tmp_path / 'no_faces_here'}"
    config = tmp_path / "broken.txt"
    config.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["bash", str(TIPC / "test_train_inference_python.sh"), str(config), "lite_train_lite_infer"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    log = (tmp_path / "output" / "lite_train_lite_infer" / "results_python.log").read_text().splitlines()
    assert log[0].startswith("Run failed with command - python train.py") and "no_faces_here" in log[0]
    assert not any(line.startswith("Run successfully") for line in log)
    assert any(line.startswith("Skipped - evaluation, export and inference") for line in log)
