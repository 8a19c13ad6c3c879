"""LPIPS (metric/lpips.py) against the real lpips package, weight-file checks, and test.py with LPIPS.

The lpips package and torch are not test dependencies, so the reference values below were computed
once with them and are held here as constants:
    PYTHONPATH=. python tools/lpips_reference.py
    (torch 2.13.0+cpu, torchvision 0.28.0, lpips 0.1.4, numpy 2.4.6; torchvision's
    `_meta_registrations` stubbed because its CUDA-built operators do not load on CPU-only torch,
    see that script). It draws the weights with `random_weights()` and the inputs with
    `reference_cases()`, both numpy only and imported here from the same script, loads the weights
    through torchvision's and lpips's own loading code, and prints `lpips.LPIPS(net='alex',
    version='0.1')(in0, in1)` for every pair (9 significant digits).

Tolerance: float32 has a unit roundoff u = 2^-24 = 6e-8; AlexNet's convolutions sum up to 3,456
products, which torch and Paddle (oneDNN) add in different orders, so features agree to about
sqrt(3456) u = 3.5e-6 relative, and LPIPS (a sum of weighted squared differences of unit-normalised
features) inherits about that. We allow rtol 1e-5; the port measured within 8e-7 relative (3e-8
absolute). An identical pair must give exactly 0 in both.
"""
import json

import numpy as np
import paddle
import pytest

from conftest import EXAMPLES
from metric.lpips import LPIPS, WEIGHTS_HINT, load_lpips, lpips_batch
from torch_format import save_torch
from tools.lpips_reference import random_weights, reference_cases
from utils.errors import UserError

REFERENCE = {
    "float_64": [0, 0.182073802, 0.00369069353],   # pairs (a, a), (a, b), (a, a + noise)
    "float_256": [0.0143100582],
    "uint8_64": [0.177907988, 0.184326127],         # via lpips.im2tensor / lpips_batch
    "float_68x100": [0.151217028],                  # not square; floor and ceil pooling differ here
}
RTOL = 1e-5


def _write(folder, backbone, heads, name=""):
    """The two files in the real layouts and containers (both real files predate torch 1.6, so
    legacy). torchvision's file also holds the classifier; LPIPS drops it, so a token-sized one
    stands in for its 57 M values."""
    backbone = dict(backbone, **{f"classifier.{i}.{p}": np.zeros((4, 4) if p == "weight" else 4, np.float32)
                                 for i in (1, 4, 6) for p in ("weight", "bias")})
    backbone_path, heads_path = folder / f"alexnet{name}.pth", folder / f"alex{name}.pth"
    save_torch(backbone, str(backbone_path), legacy=True)
    save_torch(heads, str(heads_path), legacy=True)
    return str(heads_path), str(backbone_path)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("lpips"), *random_weights())


@pytest.fixture(scope="module")
def network(weight_files):
    return load_lpips(*weight_files)


@pytest.fixture(scope="module")
def cases():
    return reference_cases()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_matches_the_lpips_package(network, cases, name):
    in0, in1 = cases[name]
    if name.startswith("uint8"):
        got = lpips_batch(network, in0, in1)
    else:
        with paddle.no_grad():
            got = network(paddle.to_tensor(in0), paddle.to_tensor(in1)).numpy()
    np.testing.assert_allclose(got, REFERENCE[name], rtol=RTOL, atol=0)


def test_identical_images_give_zero_wherever_they_sit_in_a_batch(network, cases):
    images, others = cases["uint8_64"]
    pairs = np.concatenate([images, others, images])
    for batch_size in (1, 2, 4):
        assert np.all(lpips_batch(network, pairs, pairs, batch_size=batch_size) == 0.0)


def test_batch_size_does_not_change_a_value(network, cases):
    a, b = cases["uint8_64"]
    a, b = np.concatenate([a, b, a]), np.concatenate([b, a, a[::-1]])
    by_batch = [lpips_batch(network, a, b, batch_size=s) for s in (1, 2, 3, 6)]
    assert all(np.array_equal(by_batch[0], other) for other in by_batch[1:])
    assert np.all(by_batch[0][:4] > 0.1)


def test_converted_pdparams_give_the_same_distances(weight_files, network, cases, tmp_path):
    from tools.convert_weights import main as convert
    heads, backbone = tmp_path / "alex.pdparams", tmp_path / "alexnet.pdparams"
    assert convert([weight_files[0], str(heads)]) == 0 and convert([weight_files[1], str(backbone)]) == 0
    in0, in1 = cases["uint8_64"]
    np.testing.assert_array_equal(lpips_batch(load_lpips(str(heads), str(backbone)), in0, in1),
                                  lpips_batch(network, in0, in1))


# ----------------------------------------------------------------------------------------------
# Wrong files: one line naming the file and what is wrong.

def _refused(heads, backbone):
    with pytest.raises(UserError) as err:
        load_lpips(heads, backbone)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_transposed_or_misshapen_weights_are_refused(tmp_path):
    backbone, heads = random_weights()
    backbone["features.3.weight"] = np.ascontiguousarray(backbone["features.3.weight"].transpose(1, 0, 2, 3))
    files = _write(tmp_path, backbone, heads, "_transposed")
    message = _refused(*files)
    assert files[1] in message and "'features.3.weight' has shape [64, 192, 5, 5], expected [192, 64, 5, 5]" in message

    backbone, heads = random_weights()
    heads["lin1.model.1.weight"] = np.zeros((1, 128, 1, 1), np.float32)  # vgg's heads have 128 channels there
    files = _write(tmp_path, backbone, heads, "_vgg")
    message = _refused(*files)
    assert files[0] in message and "'lin1.model.1.weight'" in message and "not vgg or squeeze" in message

    backbone, heads = random_weights()
    heads["lin5.model.1.weight"] = np.zeros((1, 512, 1, 1), np.float32)  # squeeze's heads go on to lin6
    message = _refused(*_write(tmp_path, backbone, heads, "_squeeze"))
    assert "unexpected key 'lin5.model.1.weight'" in message

    backbone, heads = random_weights()
    del backbone["features.10.bias"]
    message = _refused(*_write(tmp_path, backbone, heads, "_missing"))
    assert "lack 'features.10.bias'" in message


def test_files_of_another_kind_or_swapped_are_refused(weight_files, tmp_path):
    heads, backbone = weight_files
    # The heads file given as the backbone, and the backbone given as the heads: each named, with what is expected.
    assert "not torchvision AlexNet weights (no 'features.0.weight'" in _refused(heads, heads)
    assert "expected torchvision's alexnet-owt-7be5be79.pth (--lpips_backbone)" in _refused(heads, heads)
    assert "not LPIPS alex heads weights (no 'lin0.model.1.weight'" in _refused(backbone, backbone)
    other = tmp_path / "other.pth"
    save_torch({"conv.weight": np.zeros((2, 3, 1, 1), np.float32)}, str(other))
    assert "other.pth: not torchvision AlexNet weights" in _refused(heads, str(other))
    assert "not found" in _refused(str(tmp_path / "missing.pth"), backbone)
    message = _refused("", backbone)
    assert "--lpips_weights" in message and "alexnet-owt-7be5be79.pth" in message


def test_inputs_must_be_pairs_of_rgb_batches(network):
    with pytest.raises(ValueError, match="same shape|one shape"):
        network(paddle.zeros([1, 3, 64, 64]), paddle.zeros([2, 3, 64, 64]))
    with pytest.raises(ValueError, match="uint8"):
        lpips_batch(network, np.zeros((1, 64, 64, 3), np.float32), np.zeros((1, 64, 64, 3), np.float32))
    assert "lpips/weights/v0.1/alex.pth" in WEIGHTS_HINT
    assert not [k for k in LPIPS().state_dict() if k in ("shift", "scale")]  # constants, not file weights


# ----------------------------------------------------------------------------------------------
# test.py end to end.

@pytest.fixture(scope="module")
def generator_weights(tiny_generator_weights):
    return tiny_generator_weights


def _run_test_py(generator_weights, tmp_path, *extra):
    from test import main
    report = tmp_path / f"report_{len(list(tmp_path.iterdir()))}.json"
    assert main(["-w", generator_weights, "--test_path", str(EXAMPLES / "test"), "--limit", "3",
                 "--report", str(report), "--num_workers", "0", "--backend", "dygraph", *extra]) == 0
    return json.load(open(report))["metrics"]


def test_test_py_reports_lpips_the_same_at_every_batch_size(generator_weights, weight_files, tmp_path, capsys):
    heads, backbone = weight_files
    by_batch = {b: _run_test_py(generator_weights, tmp_path, "--batch_size", str(b), "--lpips_weights", heads,
                                "--lpips_backbone", backbone) for b in (1, 2)}
    assert by_batch[1]["lpips"] == by_batch[2]["lpips"]
    assert 0 < by_batch[1]["lpips"] < 10
    printed = capsys.readouterr().out
    assert f"LPIPS: {by_batch[1]['lpips']:.4f}" in printed


def test_test_py_says_which_lpips_file_is_missing(generator_weights, weight_files, tmp_path, capsys):
    metrics = _run_test_py(generator_weights, tmp_path, "--lpips_weights", weight_files[0])
    err = capsys.readouterr().err
    line = [line for line in err.splitlines() if line.startswith("LPIPS skipped")]
    assert len(line) == 1 and "no --lpips_backbone given" in line[0] and "alexnet-owt-7be5be79.pth" in line[0]
    assert "lpips" not in metrics
