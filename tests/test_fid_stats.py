"""FID reference statistics as the field publishes them (../shared/fixtures/fid_stats: BasicSR's `.pth`
container with random statistics, pytorch-fid's `.npz`, and the distances both tools give), read without
torch by the restricted unpickler; and tools/fid_stats.py, which makes such a file from a folder."""
import hashlib
import json
import os
import pickle

import numpy as np
import pytest
from conftest import need_shared
from fid_helpers import inception_weights  # noqa: F401  (a fixture)

from metric.fid import FewSamplesWarning, compute_statistics, frechet_distance, load_statistics
from torch_format import malicious_pickle, save_torch
from utils.errors import UserError
from utils.weights import read_torch_file


@pytest.fixture(scope="module")
def fixture():
    folder = need_shared("fixtures", "fid_stats")
    with open(folder / "fid_stats_ref.json") as f:
        return folder, json.load(f)


def test_basicsr_pth_is_read_without_torch_as_the_arrays_it_holds(fixture):
    folder, ref = fixture
    content = read_torch_file(str(folder / "inception_FFHQ_512_random.pth"), numpy_arrays=True)
    assert list(content) == ref["load"]["key_order"] and content["name"] == "FFHQ" and content["size"] == 512
    for key, array in (("pth_mean", content["mean"]), ("pth_cov", content["cov"])):
        expected = ref["arrays"][key]
        assert str(array.dtype) == expected["dtype"] and list(array.shape) == expected["shape"]
        assert hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() == expected["sha256_of_c_order_bytes"]
    mu, sigma = load_statistics(str(folder / "inception_FFHQ_512_random.pth"))
    npz_mu, npz_sigma = load_statistics(str(folder / "inception_FFHQ_512_random.npz"))
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_array_equal(mu, npz_mu)
    np.testing.assert_array_equal(sigma, npz_sigma)


def test_pth_statistics_give_the_frechet_distance_of_basicsr_and_pytorch_fid(fixture):
    """One 2048² sqrtm (tens of seconds on 2 cores)."""
    folder, ref = fixture
    sample = load_statistics(str(folder / "second_stats.npz"))
    reference = load_statistics(str(folder / "inception_FFHQ_512_random.pth"))
    value = frechet_distance(*sample, *reference)  # sample first, as BasicSR's calculate_fid_folder.py
    expected = ref["frechet"]["basicsr_calculate_fid(mu_second, sigma_second, pth.mean, pth.cov)"]["value"]
    assert value == pytest.approx(expected, rel=1e-9, abs=0)


def _global_call(module, name, *text_args):
    """A protocol-2 pickle calling module.name(*text_args)."""
    args = b"".join(b"X" + len(a).to_bytes(4, "little") + a.encode() for a in text_args)
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n(" + args + b"tR."


@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "eval"), ("numpy", "load"),
                                         ("numpy.lib.npyio", "load"), ("subprocess", "getoutput")])
@pytest.mark.parametrize("legacy", [True, False])
def test_a_pth_that_asks_for_any_other_global_is_refused_before_it_runs(tmp_path, module, name, legacy):
    marker = tmp_path / "ran"
    path = str(tmp_path / "stats.pth")
    save_torch({}, path, legacy=legacy, raw_pickle=_global_call(module, name, f"touch {marker}"))
    with pytest.raises(UserError, match=f"refused to load: its pickle asks for '{module}.{name}'"):
        load_statistics(path)
    assert not marker.exists()


def test_a_pth_smuggling_a_command_inside_the_statistics_dict_is_refused(tmp_path):
    marker = tmp_path / "ran"
    # {'mean': os.system(...)}: the global sits where an array would.
    body = malicious_pickle(f"touch {marker}")[2:-1]
    raw = b"\x80\x02}(X\x04\x00\x00\x00mean" + body + b"u."
    save_torch({}, str(tmp_path / "stats.pth"), legacy=True, raw_pickle=raw)
    with pytest.raises(UserError, match="refused to load: its pickle asks for 'os.system'"):
        load_statistics(str(tmp_path / "stats.pth"))
    assert not marker.exists()


def test_arrays_of_python_objects_are_refused(tmp_path):
    raw = pickle.dumps({"mean": np.array([1, "x"], dtype=object), "cov": np.eye(2)}, protocol=2)
    save_torch({}, str(tmp_path / "objects.pth"), legacy=True, raw_pickle=raw)
    with pytest.raises(UserError, match="non-numeric dtype"):
        load_statistics(str(tmp_path / "objects.pth"))


@pytest.mark.parametrize("legacy", [True, False])
def test_numpy_2_pickles_in_either_torch_container_load(tmp_path, legacy):
    mean, cov = np.arange(3, dtype=np.float32), np.diag([1.0, 2.0, 3.0])
    raw = pickle.dumps({"name": "X", "size": 64, "mean": mean, "cov": cov}, protocol=2)  # names numpy._core
    path = str(tmp_path / "stats.pth")
    save_torch({}, path, legacy=legacy, raw_pickle=raw)
    mu, sigma = load_statistics(path)
    np.testing.assert_array_equal(mu, mean)
    np.testing.assert_array_equal(sigma, cov)


def test_a_pth_without_mean_and_cov_says_what_it_holds(tmp_path):
    save_torch({"weight": np.zeros(3, np.float32)}, str(tmp_path / "model.pth"), legacy=True)
    with pytest.raises(UserError, match="not FID statistics \\(BasicSR's .pth holds 'mean' and 'cov'; this holds weight"):
        load_statistics(str(tmp_path / "model.pth"))


def test_tools_fid_stats_writes_the_statistics_of_a_folder(tmp_path, inception_weights):
    from deploy.features import inception_features
    from metric.fid import extract_features
    from tools.fid_stats import main
    from utils.image_io import list_images, read_image
    from utils.imaging import resize_square

    faces = need_shared("data", "celeba_hq")
    weights = inception_weights
    out = str(tmp_path / "stats" / "celeba_64.npz")
    with pytest.warns(FewSamplesWarning):
        assert main([str(faces), out, "--inception_weights", weights, "--size", "64", "--limit", "3",
                     "--batch_size", "2", "--backend", "dygraph"]) == 0
        images = np.stack([resize_square(read_image(p), 64) for p in list_images(str(faces))[:3]])
        expected = compute_statistics(extract_features(inception_features(weights, backend="dygraph"), images, 2))
    with np.load(out) as data:  # pytorch-fid's layout
        assert sorted(data.files) == ["mu", "sigma"]
        np.testing.assert_array_equal(data["mu"], expected[0])
        np.testing.assert_array_equal(data["sigma"], expected[1])
    with pytest.raises(UserError, match="written as .npz"):
        main([str(faces), str(tmp_path / "stats.pth"), "--inception_weights", weights])
    with pytest.raises(UserError, match="at least 2 images"):
        main([str(faces), out, "--inception_weights", weights, "--limit", "1"])
    assert os.path.isfile(out)
