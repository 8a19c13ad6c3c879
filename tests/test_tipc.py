"""test_tipc/: the config in the standard TIPC line layout (as PaddleOCR's and PaddleGAN's scripts read it),
the key:value parsing, that our entry scripts accept every command the standard scripts build from it,
compare_results.py's verdicts, prepare.sh's data and its one-line failures, and the chain's failure
accounting. The full lite chain itself runs in CI (.ci/run: prepare.sh + test_train_inference_python.sh)."""
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
from conftest import ROOT

from utils.image_io import write_image

TIPC = ROOT / "test_tipc"
CONFIG = TIPC / "configs" / "GPEN" / "train_infer_python.txt"
COMPARE = [sys.executable, str(TIPC / "compare_results.py")]
MODES = ("lite_train_lite_infer", "lite_train_whole_infer", "whole_train_whole_infer", "whole_infer")


def bash(script, env=None, cwd=ROOT):
    """Runs a bash snippet with common_func.sh loaded; returns the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(["bash", "-c", f"source {TIPC / 'common_func.sh'}\n{script}"], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def config_lines():
    return CONFIG.read_text().splitlines()


# ---- the layout ----------------------------------------------------------------------------------------

def test_config_lines_sit_where_the_standard_scripts_read_them():
    # PaddleOCR's and PaddleGAN's test_train_inference_python.sh read by position (0-based here, as
    # theirs); a line inserted or removed shifts every later key.
    keys = {index: line.split(":", 1)[0] for index, line in enumerate(config_lines())}
    expected = {1: "model_name", 2: "python", 3: "gpu_list", 4: "--device", 5: "auto_cast", 6: "--max_iter",
                7: "--output", 8: "--batch_size", 9: "--weights", 10: "train_model_name",
                11: "train_infer_img_dir", 14: "trainer", 15: "norm_train", 16: "pact_train", 17: "fpgm_train",
                18: "distill_train", 23: "eval", 27: "--save_dir", 28: "--model_path", 29: "norm_export",
                30: "quant_export", 35: "inference_dir", 36: "train_model", 37: "infer_export", 38: "infer_quant",
                39: "inference", 40: "--device", 41: "--enable_mkldnn", 42: "--cpu_threads", 43: "--batch_size",
                44: "--use_tensorrt", 45: "--precision", 46: "--model_dir", 47: "--img", 48: "--output",
                49: "--benchmark", 52: "random_infer_input"}
    assert {index: keys.get(index) for index in expected} == expected
    lines = config_lines()
    assert lines[0].startswith("=====") and "train_params" in lines[0]
    assert "eval_params" in lines[22] and "infer_params" in lines[26] and "infer_benchmark_params" in lines[51]
    assert lines[15].split(":", 1)[1].startswith("train.py") and lines[39].split(":", 1)[1].startswith("infer.py")
    expected_line = [line for line in lines if line.startswith("expected_metrics:")]
    assert len(expected_line) == 1
    assert (ROOT / expected_line[0].split("lite_train_lite_infer=", 1)[1].split("|")[0]).is_file()


def standard_value(line):
    """func_parser_value of the standard common_func.sh: the text between the first and second ':'."""
    return line.split(":")[1] if ":" in line else ""


def standard_params(line, mode):
    """func_parser_params of the standard common_func.sh: `mode=value` pairs split at every '='."""
    for pair in standard_value(line).split("|"):
        fields = pair.split("=")
        if fields[0] == mode:
            return fields[1] if len(fields) > 1 else ""
    return ""


def test_the_standard_parsers_read_the_same_values_as_ours():
    # Ours keep a second ':' or '='; the standard ones cut there. The config must not need either.
    lines = config_lines()
    script = "\n".join(f'func_parser_value {shlex.quote(line)}' for line in lines)
    ours = bash(script).stdout.split("\n")[:len(lines)]
    assert ours == [standard_value(line) for line in lines]
    for index in (6, 8):  # the two mode-dependent lines of the standard layout
        for mode in MODES:
            out = bash(f"func_parser_params {shlex.quote(lines[index])} {mode}").stdout.strip()
            assert out == standard_params(lines[index], mode), (index, mode)
    assert standard_params(lines[6], "lite_train_lite_infer") == "40"
    assert standard_params(lines[6], "whole_train_whole_infer") == "200000"


def test_parser_handles_modes_equals_signs_and_nulls():
    out = bash('func_parser_params "k:lite_train_lite_infer=-o a.b=10|whole_infer=/data/a" lite_train_lite_infer\n'
               'func_parser_params "k:lite_train_lite_infer=1|whole_infer=/data/a" whole_infer\n'
               'echo "[$(func_parser_params "k:lite_train_lite_infer=1" whole_train_whole_infer)]"\n'
               'MODE=lite_train_lite_infer; func_parser_params "k:lite_train_lite_infer=7"\n'
               'echo "[$(func_set_params --x null)][$(func_set_params null 3)][$(func_set_params --x "")]$(func_set_params --x 3)"')
    assert out.stdout.splitlines() == ["-o a.b=10", "/data/a", "[]", "7", "[][][]--x=3"]


def test_status_check_writes_the_standard_lines_and_returns_the_status(tmp_path):
    log = tmp_path / "results_python.log"
    out = bash(f'status_check 0 "python a.py" {log} GPEN a.log; echo "rc $?"; '
               f'status_check 2 "python b.py" {log} GPEN b.log; echo "rc $?"')
    assert "rc 0" in out.stdout and "rc 2" in out.stdout
    assert log.read_text().splitlines() == [" Run successfully with command - GPEN - python a.py - a.log ",
                                            " Run failed with command - GPEN - python b.py - b.log "]


# ---- the commands the standard scripts build, against our entry scripts' parsers --------------------------

def parses(script, argv):
    """True when the entry script's argparse accepts argv (it exits 2 otherwise)."""
    module = __import__(script)
    try:
        module.parse_args(argv)
    except SystemExit as stop:
        return stop.code == 0
    return True


def fake_checkout(tmp_path, examples=True):
    """test_tipc/'s scripts and config in a checkout with no ../shared beside it (utils/ and configs/
    linked), so that nothing here touches the real test_tipc/data or test_tipc/output."""
    repo = tmp_path / "repo"
    (repo / "test_tipc").mkdir(parents=True)
    for name in ("common_func.sh", "checks.sh", "prepare.sh", "test_train_inference_python.sh"):
        shutil.copy(TIPC / name, repo / "test_tipc" / name)
    shutil.copytree(TIPC / "configs", repo / "test_tipc" / "configs")
    for name in ("utils", "configs") + (("examples",) if examples else ()):
        os.symlink(ROOT / name, repo / name)
    return repo


def run_chain(tmp_path, fail=(), mode="lite_train_lite_infer"):
    """Our test_train_inference_python.sh in a fake checkout, with the config's `python` replaced by a
    recorder: it writes each command's arguments, exits 1 for the scripts in `fail` and 0 otherwise.
    Returns (the CompletedProcess, [argv of each command], results_python.log lines)."""
    repo = fake_checkout(tmp_path)
    record = tmp_path / "commands.jsonl"
    stub = tmp_path / "python"
    stub.write_text(f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
if args[:1] == ["-c"]:
    print("False")  # the CUDA probe: a CPU build
    sys.exit(0)
with open({str(record)!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
sys.exit(1 if args[0] in {list(fail)!r} else 0)
""")
    stub.chmod(0o755)
    lines = config_lines()
    lines[2] = f"python:{stub}"
    config = repo / "test_tipc" / "configs" / "GPEN" / "train_infer_python.txt"
    config.write_text("\n".join(lines) + "\n")
    (repo / "test_tipc" / "data").mkdir()
    (repo / "test_tipc" / "data" / "mode.txt").write_text(mode + "\n")
    out = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", str(config), mode], cwd=repo,
                         capture_output=True, text=True, timeout=120)
    commands = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    log = repo / "test_tipc" / "output" / "GPEN" / mode / "results_python.log"
    return out, commands, log.read_text().splitlines() if log.exists() else []


def test_every_command_the_chain_builds_parses(tmp_path):
    out, commands, log = run_chain(tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
    scripts = [argv[0] for argv in commands if argv[0] != "test_tipc/compare_results.py"]
    assert scripts[:3] == ["train.py", "test.py", "export_model.py"]
    assert scripts.count("infer.py") == 8  # oneDNN on/off x threads 1, 2 x batch 1, 4; GPU rows skipped
    assert sum("Run successfully" in line for line in log) == len(commands)
    assert any(line.startswith("Skipped - inference on gpu") for line in log)
    assert any(line.startswith("Skipped - training on gpu 0") for line in log)
    for argv in commands:
        if argv[0] != "test_tipc/compare_results.py":
            assert parses(argv[0][:-3], argv[1:]), argv


def test_the_standard_scripts_forms_parse():
    """What PaddleGAN's and PaddleOCR's scripts pass that ours does not: the exact argument lists their
    test_train_inference_python.sh builds from this config (traced from their source)."""
    lines = config_lines()
    run = "./test_tipc/output/GPEN/lite_train_lite_infer/norm_train_gpus_-1_autocast_null"
    train = shlex.split(standard_value(lines[15]))
    inference = shlex.split(standard_value(lines[39]))
    # PaddleGAN: no device on the training line; the export gets the weights bare, then `--save_dir DIR`.
    assert parses("train", train[1:] + [f"--output={run}", "--max_iter=40", "--batch_size=4"])
    assert parses("export_model", [f"{run}/g_ema.pdparams", "--save_dir", run])
    # PaddleGAN's CPU rows pass only the device and the model folder; its GPU rows pass TensorRT and precision.
    assert parses("infer", inference[1:] + ["--device=cpu", f"--model_dir={run}"])
    assert parses("infer", inference[1:] + ["--device=gpu", "--use_tensorrt=True", "--precision=fp16",
                                            f"--model_dir={run}", "--batch_size=4", "--img=./test_tipc/data/test"])
    # PaddleOCR: the device key of line 4 for training and evaluation, `--benchmark=True`, fp16 on the CPU.
    assert parses("train", train[1:] + ["--device=auto", f"--output={run}", "--max_iter=40", "--batch_size=4"])
    assert parses("test", shlex.split(standard_value(lines[23]))[1:]
                  + [f"--weights={run}/g_ema.pdparams", "--device=cpu", "--report=r.json"])
    assert parses("export_model", [f"--model_path={run}/g_ema.pdparams", f"--save_dir={run}"])
    assert parses("infer", inference[1:] + ["--device=cpu", "--enable_mkldnn=True", "--cpu_threads=1",
                                            f"--model_dir={run}", "--batch_size=1", "--img=./test_tipc/data/test",
                                            "--benchmark=True", "--precision=fp16"])


# ---- compare_results.py ----------------------------------------------------------------------------------

def make_data(folder, source="examples"):
    for part, count in (("train", 3), ("test", 2)):
        (folder / part).mkdir(parents=True)
        for i in range(count):
            (folder / part / f"{i:05d}.png").write_bytes(f"{part}{i}".encode())
    (folder / "source.txt").write_text(source + "\n")


def results_for(data, psnr=7.0, tolerance=1.0):
    fingerprint = subprocess.run(COMPARE + ["--fingerprint", str(data)], capture_output=True, text=True,
                                 check=True).stdout.strip()
    path = data.parent / "expected.txt"
    path.write_text(f"# test\ndata examples {fingerprint}\nmetric examples eval PSNR {psnr} {tolerance}\n"
                    f"metric examples eval SSIM 0.1 0.05\nmetric examples infer PSNR {psnr} {tolerance}\n")
    return path


def compare(*args):
    return subprocess.run(COMPARE + [str(a) for a in args], capture_output=True, text=True)


def test_compare_passes_within_and_fails_outside_the_tolerance(tmp_path):
    data = tmp_path / "data"
    make_data(data)
    expected = results_for(data)
    log = tmp_path / "eval.log"
    log.write_text("evaluating...\nPSNR: 7.6000\nSSIM: 0.1200\n")
    ok = compare("--step", "eval", "--log", log, "--expected", expected, "--data", data)
    assert ok.returncode == 0 and ok.stdout.count(" ok") == 2
    log.write_text("PSNR: 8.2000\nSSIM: 0.1200\n")
    far = compare("--step", "eval", "--log", log, "--expected", expected, "--data", data)
    assert far.returncode == 1 and "eval PSNR on examples: 8.2000 (expected 7.0000 ± 1) MISMATCH" in far.stdout
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
    data = tmp_path / "data"
    make_data(data)
    expected = results_for(data)
    log = tmp_path / "eval.log"
    log.write_text("PSNR: 7.0\nSSIM: 0.1\n")
    (data / "test" / "00000.png").write_bytes(b"another face")
    # prepare.sh built the sample set, yet the content differs: the numbers cannot apply.
    changed = compare("--step", "eval", "--log", log, "--expected", expected, "--data", data)
    assert changed.returncode == 1 and "not a set with expected metrics" in changed.stdout
    # A folder of the user's own faces has no expected values: said, not failed.
    (data / "source.txt").write_text("GPEN_TIPC_DATA=/my/faces\n")
    custom = compare("--step", "eval", "--log", log, "--expected", expected, "--data", data)
    assert custom.returncode == 0 and "not compared" in custom.stdout


def test_the_stored_fingerprint_is_the_shipped_samples(tmp_path):
    # What prepare.sh copies from examples/ (train/ all, test/ the first 8) is the set results/ knows.
    lines = (TIPC / "results" / "GPEN" / "lite_train_lite_infer.txt").read_text().splitlines()
    stored = [line.split()[2] for line in lines if line.startswith("data examples ")]
    data = tmp_path / "data"
    shutil.copytree(ROOT / "examples" / "train", data / "train")
    (data / "test").mkdir()
    for name in sorted(os.listdir(ROOT / "examples" / "test"))[:8]:
        shutil.copy(ROOT / "examples" / "test" / name, data / "test" / name)
    found = subprocess.run(COMPARE + ["--fingerprint", str(data)], capture_output=True, text=True, check=True)
    assert stored == [found.stdout.strip()]


# ---- prepare.sh ------------------------------------------------------------------------------------------

def prepare(repo, env, mode="lite_train_lite_infer"):
    """prepare.sh MODE in `repo` with only the GPEN_* variables given here."""
    env = dict({k: v for k, v in os.environ.items() if not k.startswith("GPEN_")}, **env)
    return subprocess.run(["bash", "test_tipc/prepare.sh", "test_tipc/configs/GPEN/train_infer_python.txt", mode],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def test_prepare_takes_the_shipped_samples_without_download_or_shared(tmp_path):
    repo = fake_checkout(tmp_path)
    built = prepare(repo, {})
    assert built.returncode == 0, built.stderr
    data = repo / "test_tipc" / "data"
    assert sorted(os.listdir(data / "train")) == sorted(os.listdir(ROOT / "examples" / "train"))
    assert sorted(os.listdir(data / "test")) == sorted(os.listdir(ROOT / "examples" / "test"))[:8]
    assert (data / "config.yaml").read_bytes() == (ROOT / "configs" / "lite_64.yaml").read_bytes()
    assert (data / "mode.txt").read_text().strip() == "lite_train_lite_infer"
    assert (data / "source.txt").read_text().strip() == "examples"

    gone = fake_checkout(tmp_path / "b", examples=False)
    missing = prepare(gone, {})
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "examples/train" in missing.stderr
    assert not (gone / "test_tipc" / "data").exists()


def test_prepare_takes_a_folder_of_faces_and_rejects_what_would_fail_later(tmp_path):
    repo = fake_checkout(tmp_path)
    faces = tmp_path / "faces"
    faces.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        write_image(str(faces / f"f{i:02d}.jpg"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    built = prepare(repo, {"GPEN_TIPC_DATA": str(faces)})
    assert built.returncode == 0, built.stderr
    data = repo / "test_tipc" / "data"
    assert len(os.listdir(data / "train")) == 16 and len(os.listdir(data / "test")) == 8

    write_image(str(faces / "zz_photo.jpg"), rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    for name in sorted(os.listdir(faces))[:12]:
        os.remove(faces / name)
    wide = prepare(repo, {"GPEN_TIPC_DATA": str(faces)})
    assert wide.returncode == 1 and wide.stderr.count("\n") == 1 and "zz_photo.jpg" in wide.stderr
    assert "48x32" in wide.stderr and not data.exists()
    missing = prepare(repo, {"GPEN_TIPC_DATA": str(faces / "missing")})
    assert missing.returncode == 1 and "is not a folder" in missing.stderr


def test_whole_modes_name_what_is_missing_in_one_line(tmp_path):
    repo = fake_checkout(tmp_path)
    (tmp_path / "empty").mkdir()
    out = prepare(repo, {"GPEN_CELEBA_HQ_DIR": str(tmp_path / "empty")}, "whole_infer")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "GPEN_WEIGHTS" in out.stderr and "not set" in out.stderr and "is not a folder of images" in out.stderr
    whole = prepare(repo, {}, "lite_train_whole_infer")
    assert whole.returncode == 1 and whole.stderr.count("\n") == 1 and "GPEN_CELEBA_HQ_DIR" in whole.stderr


def test_lite_train_whole_infer_links_the_test_faces(tmp_path):
    repo = fake_checkout(tmp_path)
    faces = tmp_path / "celeba"
    faces.mkdir()
    write_image(str(faces / "a.png"), np.zeros((16, 16, 3), np.uint8))
    out = prepare(repo, {"GPEN_CELEBA_HQ_DIR": str(faces)}, "lite_train_whole_infer")
    assert out.returncode == 0, out.stderr
    data = repo / "test_tipc" / "data"
    assert (data / "test").is_symlink() and os.path.samefile(data / "test", faces)
    assert len(os.listdir(data / "train")) == 10


# ---- the chain's accounting ------------------------------------------------------------------------------

def test_a_failed_training_is_a_failed_line_and_a_non_zero_exit(tmp_path):
    out, commands, log = run_chain(tmp_path, fail=("train.py",))
    assert out.returncode == 1 and [argv[0] for argv in commands] == ["train.py"]
    assert log[0].startswith(" Run failed with command - GPEN - ") and " train.py -c " in log[0]
    assert not any("Run successfully" in line for line in log)
    assert any(line.startswith("Skipped - evaluation, export and inference") for line in log)
    assert "lite_train_lite_infer: 1 commands, 1 failed" in out.stdout


def test_a_failed_export_skips_its_inference_and_fails_the_run(tmp_path):
    out, commands, log = run_chain(tmp_path, fail=("export_model.py",))
    assert out.returncode == 1 and "infer.py" not in [argv[0] for argv in commands]
    assert any(line.startswith("Skipped - inference of norm_train_gpus_-1") for line in log)


def test_the_chain_refuses_data_prepared_for_another_mode(tmp_path):
    repo = fake_checkout(tmp_path)
    (repo / "test_tipc" / "data").mkdir()
    (repo / "test_tipc" / "data" / "mode.txt").write_text("whole_infer\n")
    out = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", str(CONFIG), "lite_train_lite_infer"],
                         cwd=repo, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "prepare.sh" in out.stderr
