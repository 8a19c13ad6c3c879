"""The blurs of large maps (tap convolutions, model/layers.py) in the exported graph: the oneDNN
predictor (in fresh processes, as tests/test_deploy.py does for the whole model) and ONNX equal the
dygraph generator. The 64-px model is exported with every blur in the tap form (the dense band is
chosen below model.layers.DENSE_BLUR_MAX_SIDE, so at the official sizes only the large maps use taps)."""
import collections
import json
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pytest
from conftest import ROOT

from deploy.predictor import export
from model import FullGenerator, layers

AGREEMENT = 1e-4  # max |predictor − dygraph|, as in tests/test_deploy.py


@pytest.fixture(scope="module")
def exported_with_taps(tmp_path_factory):
    saved = layers.DENSE_BLUR_MAX_SIDE
    layers.DENSE_BLUR_MAX_SIDE = 0  # every blur as tap convolutions
    try:
        paddle.seed(11)
        generator = FullGenerator(64, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.0625)
        for layer in generator.generator.convs:  # let the encoder features through, as in a trained model
            layer.noise.weight.set_value(paddle.to_tensor([0.5]))
        generator.eval()
        folder = tmp_path_factory.mktemp("taps")
        model_file, params_file = export(generator, [3, 64, 64], str(folder / "gpen"), output_index=0)
        x = np.random.default_rng(3).uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32)
        with paddle.no_grad():
            reference = generator(paddle.to_tensor(x))[0].numpy()
    finally:
        layers.DENSE_BLUR_MAX_SIDE = saved
    np.save(folder / "x.npy", x)
    np.save(folder / "reference.npy", reference)
    return dict(folder=folder, model_file=model_file, params_file=params_file, x=x, reference=reference,
                generator=generator)


def test_the_export_holds_the_tap_convolutions(exported_with_taps):
    """Guards the tests below: the exported graph has two convolutions per blur and no banded matmuls."""
    if not exported_with_taps["model_file"].endswith(".json"):
        pytest.skip("counts ops in Paddle 3's JSON program only")
    with open(exported_with_taps["model_file"]) as f:
        ops = collections.Counter(re.findall(r'"#":\s*"[0-9]+\.([a-z0-9_]+)"', json.dumps(json.load(f))))
    g = exported_with_taps["generator"]
    kinds = collections.Counter(type(layer).__name__ for layer in g.sublayers())
    convolutions = kinds["EqualConv2d"] + kinds["ModulatedConv2d"] + kinds["Upsample"]
    assert ops["conv2d"] == convolutions + 2 * kinds["Blur"]
    # matmuls: each EqualLinear (mapping, final_linear, modulations), demodulation, polyphase weight
    upsampling = sum(1 for layer in g.sublayers() if getattr(layer, "upsample", None) is True)
    assert ops["matmul"] == kinds["EqualLinear"] + kinds["ModulatedConv2d"] - kinds["ToRGB"] + upsampling


RUN_IN_FRESH_PROCESS = """
import sys
from utils.runtime import prepare_cpu; prepare_cpu(2)
import numpy as np
from deploy.predictor import Predictor
folder = sys.argv[1]
predictor = Predictor(sys.argv[2], sys.argv[3], mkldnn=sys.argv[4] == "1")
x, reference = np.load(folder + "/x.npy"), np.load(folder + "/reference.npy")
out = np.concatenate([predictor(x[:1]), predictor(x)[1:]])
print(float(np.abs(out - reference).max()) if np.isfinite(out).all() else "nan")
"""


@pytest.mark.parametrize("mkldnn", ["1", "1", "0"])
def test_predictor_equals_dygraph_in_fresh_processes(exported_with_taps, mkldnn):
    e = exported_with_taps
    result = subprocess.run([sys.executable, "-c", RUN_IN_FRESH_PROCESS, str(e["folder"]), e["model_file"],
                             e["params_file"], mkldnn], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    gap = result.stdout.strip().splitlines()[-1]
    assert gap != "nan" and float(gap) <= AGREEMENT


def test_onnx_equals_dygraph(exported_with_taps, tmp_path):
    paddle2onnx = pytest.importorskip("paddle2onnx", reason="paddle2onnx is not installed (requirements-dev.txt)")
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    e = exported_with_taps
    path = str(tmp_path / "gpen.onnx")
    paddle2onnx.export(e["model_file"], e["params_file"], path, opset_version=13, enable_onnx_checker=True)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: e["x"]})[0]
    assert np.abs(out - e["reference"]).max() <= AGREEMENT
