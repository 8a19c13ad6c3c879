"""export_model.py / infer.py / predict.py: the exported predictor equals the dygraph generator (oneDNN
on and off, several batch sizes, fresh processes), ONNX equals Paddle, and bad input gives one line."""
import os
import subprocess
import sys

import cv2
import numpy as np
import paddle
import pytest
from conftest import ROOT, need_shared

from deploy.predictor import Predictor, export, write_model_info
from model import FullGenerator
from model.loading import GENERATOR_WEIGHTS, set_weights
from utils.config import ModelConfig
from utils.errors import UserError
from utils.imaging import to_images, to_network
from utils.weights import read_state_dict

AGREEMENT = 1e-4  # the bound: max |predictor − dygraph|


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The fixture generator (config A) with its perturbed weights (so every parameter matters), exported."""
    folder = need_shared("fixtures", "upstream_gpen")
    state = dict(read_state_dict(str(folder / "g_A.pth"), GENERATOR_WEIGHTS).state)
    io = np.load(folder / "io_A.npz")
    state.update({k[len("pert/g_param/"):]: io[k] for k in io.files if k.startswith("pert/g_param/")})
    generator = FullGenerator(64, 128, 8, channel_multiplier=1, narrow=0.0625)
    set_weights(generator, state, "g_A.pth")
    generator.eval()
    out = tmp_path_factory.mktemp("export")
    weights = str(out / "G.pdparams")
    paddle.save(generator.state_dict(), weights)
    prefix = str(out / "gpen")
    model_file, params_file = export(generator, [3, 64, 64], prefix, output_index=0)
    write_model_info(prefix, ModelConfig(size=64, style_dim=128, channel_multiplier=1, narrow=0.0625))
    x = np.concatenate([io["lq"], io["hq"][:1]])  # three real faces
    with paddle.no_grad():
        reference = generator(paddle.to_tensor(x))[0].numpy()
    np.save(out / "x.npy", x)
    np.save(out / "reference.npy", reference)
    return dict(folder=out, model_file=model_file, params_file=params_file, weights=weights, x=x,
                reference=reference, generator=generator)


@pytest.mark.parametrize("mkldnn", [True, False])
def test_predictor_equals_dygraph_at_batch_1_and_3(exported, mkldnn):
    predictor = Predictor(exported["model_file"], exported["params_file"], mkldnn=mkldnn, threads=2)
    for batch in (1, 3):
        out = predictor(exported["x"][:batch])
        assert np.isfinite(out).all()
        assert np.abs(out - exported["reference"][:batch]).max() <= AGREEMENT


RUN_IN_FRESH_PROCESS = """
import sys
from utils.runtime import prepare_cpu; prepare_cpu(2)
import numpy as np
from deploy.predictor import Predictor
folder = sys.argv[1]
predictor = Predictor(sys.argv[2], sys.argv[3], mkldnn=True)
x, reference = np.load(folder + "/x.npy"), np.load(folder + "/reference.npy")
out = predictor(x)
print(float(np.abs(out - reference).max()) if np.isfinite(out).all() else "nan")
"""


def test_onednn_predictor_is_right_in_several_fresh_processes(exported):
    """A direct port once returned an all-NaN image in one fresh process in five (GPEN_SPEC §9)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", RUN_IN_FRESH_PROCESS, str(exported["folder"]),
                                 exported["model_file"], exported["params_file"]],
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        gap = result.stdout.strip().splitlines()[-1]
        assert gap != "nan" and float(gap) <= AGREEMENT


def test_onnx_export_equals_paddle(exported, tmp_path):
    pytest.importorskip("paddle2onnx", reason="paddle2onnx is not installed (pip install -r requirements-dev.txt)")
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from export_model import main
    assert main(["--model_path", exported["weights"], "--save_dir", str(tmp_path), "--onnx"]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "gpen.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: exported["x"].astype(np.float32)})[0]
    assert np.abs(out - exported["reference"]).max() <= AGREEMENT


# ---- command lines -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_model(tiny_generator_weights, tmp_path_factory):
    """A tiny generator (no ../shared needed) as the command-line tests see it: weights and an export."""
    from model.loading import load_generator

    generator, model_cfg = load_generator(tiny_generator_weights)
    out = tmp_path_factory.mktemp("cli_export")
    prefix = str(out / "gpen")
    model_file, params_file = export(generator, [3, 64, 64], prefix, output_index=0)
    write_model_info(prefix, model_cfg)
    return dict(folder=out, model_file=model_file, params_file=params_file, weights=tiny_generator_weights,
                generator=generator)


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(1)
    face = cv2.GaussianBlur(rng.uniform(0, 255, (64, 64, 3)).astype(np.float32), (0, 0), 2).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "face.png"), face)
    cv2.imwrite(str(tmp_path / "gray.png"), face[:, :, 0])
    cv2.imwrite(str(tmp_path / "wide.png"), np.zeros((64, 96, 3), np.uint8))
    (tmp_path / "notes.png").write_text("not an image")
    os.makedirs(tmp_path / "empty")
    return tmp_path


def bad_inputs(inputs, cli_model):
    w = cli_model["weights"]
    return {
        "missing file": (["--w", w, "--img", str(inputs / "nothere.png")], "input not found"),
        "non-image": (["--w", w, "--img", str(inputs / "notes.png")], "not a readable image"),
        "wrong size": (["--w", w, "--img", str(inputs / "wide.png"), "--aligned", "yes"], "an aligned face is square"),
        "empty folder": (["--w", w, "--img", str(inputs / "empty")], "no images found"),
        "weights of the wrong size": (["--w", w, "--img", str(inputs / "face.png"), "--size", "128"], "shape"),
    }


@pytest.mark.parametrize("case", ["missing file", "non-image", "wrong size", "empty folder",
                                  "weights of the wrong size"])
def test_predict_bad_input_is_one_line_and_writes_nothing(cli_model, inputs, case):
    from predict import main
    argv, expected = bad_inputs(inputs, cli_model)[case]
    output = inputs / "out"
    with pytest.raises(UserError, match=expected) as err:
        main(argv + ["--output", str(output), "--backend", "dygraph"])
    assert "\n" not in str(err.value)
    assert not output.exists()


@pytest.mark.parametrize("case", ["missing file", "non-image", "wrong size", "empty folder"])
def test_infer_bad_input_is_one_line_and_writes_nothing(cli_model, inputs, case):
    from infer import main
    argv, expected = bad_inputs(inputs, cli_model)[case]
    argv = [a for a in argv if a not in ("--w", cli_model["weights"])]
    output = inputs / "out"
    with pytest.raises(UserError, match=expected):
        main(argv + ["--model_dir", str(cli_model["folder"]), "--output", str(output)])
    assert not output.exists()


def test_entry_script_exits_2_with_one_line_on_stderr(cli_model, inputs):
    result = subprocess.run([sys.executable, str(ROOT / "infer.py"), "--model_dir", str(cli_model["folder"]),
                             "--img", str(inputs / "nothere.png")], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: input not found: {inputs / 'nothere.png'}"]


def _restored_by(generator, faces_rgb):
    with paddle.no_grad():
        return to_images(generator(paddle.to_tensor(to_network(faces_rgb)))[0].numpy())


def test_predict_degrade_writes_a_triple_and_prints_psnr(cli_model, inputs, capsys):
    from metric.psnr import psnr
    from predict import main
    assert main(["--w", cli_model["weights"], "--img", str(inputs / "face.png"), "--degrade", "--seed", "3",
                 "--output", str(inputs / "out"), "--backend", "dygraph"]) == 0
    printed = capsys.readouterr().out
    triple = cv2.imread(str(inputs / "out" / "face.png"))[:, :, ::-1]
    assert triple.shape == (64, 192, 3)
    degraded, restored, original = triple[:, :64], triple[:, 64:128], triple[:, 128:]
    # The middle third is the generator's restoration of the left third, the PSNR printed is its PSNR
    # against the right third, and the right third is the input (gray if the degradation made it gray).
    np.testing.assert_array_equal(restored, _restored_by(cli_model["generator"], degraded[None])[0])
    assert f"PSNR {psnr(restored, original):.2f} dB" in printed
    face = cv2.imread(str(inputs / "face.png"))[:, :, ::-1]
    assert np.array_equal(original, face) or np.array_equal(original[:, :, 0], original[:, :, 1])
    assert not np.array_equal(degraded, original)


def test_grayscale_photo_is_restored_as_rgb_with_one_notice(cli_model, inputs, capsys):
    from predict import main
    assert main(["--w", cli_model["weights"], "--img", str(inputs / "gray.png"), "--aligned", "yes",
                 "--output", str(inputs / "out"), "--backend", "dygraph"]) == 0
    notices = [line for line in capsys.readouterr().out.splitlines() if "grayscale image" in line]
    assert len(notices) == 1 and "gray.png" in notices[0]
    restored = cv2.imread(str(inputs / "out" / "gray.png"))[:, :, ::-1]
    gray = cv2.imread(str(inputs / "gray.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(restored, _restored_by(cli_model["generator"], np.repeat(gray[None, :, :, None], 3, 3))[0])


def test_infer_restores_and_benchmarks(cli_model, inputs, capsys):
    from infer import main
    assert main(["--model_dir", str(cli_model["folder"]), "--img", str(inputs / "face.png"), "--aligned", "yes",
                 "--output", str(inputs / "out"), "--benchmark", "--enable_mkldnn", "True"]) == 0
    printed = capsys.readouterr().out
    for phase in ("preprocess", "inference", "postprocess", "throughput"):
        assert phase in printed
    restored = cv2.imread(str(inputs / "out" / "face.png"))[:, :, ::-1]
    face = cv2.imread(str(inputs / "face.png"))[:, :, ::-1]
    expected = _restored_by(cli_model["generator"], face[None])[0]
    # The checked predictor's output, rounded to 8 bit: within one gray level of dygraph's.
    assert np.abs(restored.astype(int) - expected).max() <= 1
    assert (restored != expected).mean() < 0.01
