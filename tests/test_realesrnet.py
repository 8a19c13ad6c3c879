"""RRDBNet and the authors' RealESRNet.process (faces/realesrnet.py) against the fixtures of
../shared/fixtures/upstream_suite (README section d): x1 / x2 / x4, whole image and tiled, the
authors' mode with their quirks and the default mode; loading the authors' file format without them."""
import collections
import copy
import json

import cv2
import numpy as np
import paddle
import pytest
from conftest import need_shared
from suite_fixtures import SUITE, compare_stored_map, compare_uint8, decoded_sha256
from torch_format import save_torch

from faces.inference_ops import pixel_unshuffle
from faces.realesrnet import (REALESRNET_WEIGHTS, RealESRNet, RRDBNet, load_rrdbnet, plan_tiles, realesrnet_file,
                              rrdbnet_config)
from utils.errors import UserError

SCALES = (1, 2, 4)
FIXTURE_TILE = 32   # README (d): tile_size 32, tile_pad 10


@pytest.fixture(scope="module")
def suite():
    folder = need_shared(*SUITE)
    return dict(folder=folder, npz=np.load(folder / "realesrnet_small.npz"),
                manifest=json.load(open(folder / "manifest_suite.json")))


@pytest.fixture(scope="module")
def models(suite):
    """One RealESRNet per scale on the checked predictor, strict: its first call must agree with
    dygraph (deploy.checked.TOLERANCE), and every output below is the predictor's."""
    return {s: RealESRNet(str(suite["folder"] / f"realesrnet_small_x{s}.pth"), scale=s, tile_size=0,
                          authors_mode=True, backend="predictor") for s in SCALES}


def test_inputs_are_the_documented_crops(suite):
    photo_facts = suite["manifest"]["r50"]["photos"][0]
    photo = cv2.imread(str(need_shared("data", "wild", "2009_004587.jpg")), cv2.IMREAD_COLOR)
    assert decoded_sha256(photo) == photo_facts["decoded_sha256"], "this OpenCV decodes the JPEG differently"
    sr = suite["manifest"]["sr"]
    for name in ("small", "tiled"):
        (top, bottom, left, right), size = sr[name]
        crop = cv2.resize(photo[top:bottom, left:right], tuple(size), interpolation=cv2.INTER_AREA)
        assert np.array_equal(crop, suite["npz"][f"input_{name}"])


@pytest.mark.parametrize("scale", SCALES)
def test_architecture_read_off_the_small_files(models, scale):
    assert models[scale].net.config == dict(scale=scale, num_feat=8, num_block=2, num_grow_ch=8)
    assert models[scale].backend == "predictor"


@pytest.mark.parametrize("scale", SCALES)
def test_whole_image_matches_upstream(suite, models, scale):
    npz, model = suite["npz"], models[scale]
    x, _ = model.network_input(npz["input_small"])
    facts = suite["manifest"]["sr"]["scales"][str(scale)]["plain"]
    assert [list(x.shape)] == facts["model_input_shapes"]
    raw = model.run_network(x)
    assert list(raw.shape) == facts["raw_shape"]
    if scale == 4:
        compare_stored_map(raw, npz, "x4/plain/raw", 4)
    else:
        ref = npz[f"x{scale}/plain/raw"]
        np.testing.assert_allclose(raw, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    out = model.process(npz["input_small"])
    compare_uint8(out, npz[f"x{scale}/plain/out"], f"x{scale} plain")


@pytest.mark.parametrize("scale", (2, 4))
def test_tiles_match_upstream(suite, models, scale):
    npz, model = suite["npz"], models[scale]
    x, _ = model.network_input(npz["input_tiled"])
    tiles = plan_tiles(x.shape[2], x.shape[3], FIXTURE_TILE, 10)
    shapes = [[1, 3, t.source[1] - t.source[0], t.source[3] - t.source[2]] for t in tiles]
    assert shapes == suite["manifest"]["sr"]["scales"][str(scale)]["tiled"]["model_input_shapes"]
    tiled = copy.copy(model)  # the same predictor (exported with an open H, W) serves every tile shape
    tiled.tile_size = FIXTURE_TILE
    compare_uint8(tiled.process(npz["input_tiled"]), npz[f"x{scale}/tiled/out"], f"x{scale} tiled")


def test_authors_mode_quirks(suite, models):
    npz = suite["npz"]
    # their default is the whole image (--tile_size 0); ours tiles
    assert RealESRNet(models[2].net, authors_mode=True, backend="dygraph").tile_size == 0
    assert RealESRNet(models[2].net, backend="dygraph").tile_size == 384
    # x2 on an odd size keeps a reflect-padded row (71x94 -> 143x188), as upstream
    assert models[2].process(npz["input_small"]).shape == (143, 188, 3)
    # x1 tiling with tile_pad 10: a 42 px tile is not a multiple of 4, upstream returns None
    tiled = RealESRNet(models[1].net, tile_size=FIXTURE_TILE, authors_mode=True, backend="dygraph")
    with pytest.warns(RuntimeWarning, match="not a multiple of 4"):
        assert tiled.process(npz["input_tiled"]) is None


def test_default_mode(suite, models):
    npz = suite["npz"]
    small, big = npz["input_small"], npz["input_tiled"]
    # the crop removes scale x h_pad: exactly twice the input, the authors' output without its extra row
    x2 = RealESRNet(models[2].net, tile_size=0, backend="dygraph")
    out = x2.process(small)
    assert out.shape == (142, 188, 3)
    compare_uint8(out, npz["x2/plain/out"][:142], "x2 default")
    # x2 / x4 tiles are the authors' (even tile size); only the crop differs
    for scale in (2, 4):
        tiled = RealESRNet(models[scale].net, tile_size=FIXTURE_TILE, backend="dygraph")
        out = tiled.process(big)
        assert out.shape == (scale * 101, scale * 151, 3)
        compare_uint8(out, npz[f"x{scale}/tiled/out"][:scale * 101, :scale * 151], f"x{scale} default tiled")


def test_default_mode_tiles_x1(suite, models):
    big = suite["npz"]["input_tiled"]
    net = models[1].net
    tiled = RealESRNet(net, tile_size=FIXTURE_TILE, backend="dygraph")
    out = tiled.process(big)
    assert out.shape == (101, 151, 3)
    # the image is padded to 104x152; the first tile's context [0, 42) is widened to [0, 44), and the
    # tile's own 32x32 output is the network's on that region
    x, _ = tiled.network_input(big)
    with paddle.no_grad():
        first = net(paddle.to_tensor(x[:, :, :44, :44])).numpy()[0, :, :32, :32]
    expected = np.round(np.clip(first, 0, 1)[::-1].transpose(1, 2, 0) * np.float32(255)).astype(np.uint8)
    np.testing.assert_array_equal(out[:32, :32], expected)
    # one tile covering the image equals the whole-image run
    whole = RealESRNet(net, tile_size=0, backend="dygraph").process(big)
    one_tile = RealESRNet(net, tile_size=160, backend="dygraph").process(big)
    compare_uint8(one_tile, whole, "x1 one tile")


def test_real_realesrnet_layouts_load(tmp_path):
    """The authors' realesrnet_x{1,2,4}.pth layouts: scale, widths and depth read off the shapes, our
    module's keys and shapes equal to the file's; a file of the x4 layout (zeros, 38 MB) loads."""
    for scale in SCALES:
        doc = json.load(open(need_shared(*SUITE, f"shapes_realesrnet_x{scale}.json")))
        assert doc["wrapper_key"] in REALESRNET_WEIGHTS.entries
        state = collections.OrderedDict(
            (e["key"], np.broadcast_to(np.zeros((), e["dtype"]), e["shape"])) for e in doc["keys"])
        config = rrdbnet_config(state)
        assert config == dict(scale=scale, num_feat=32, num_block=23, num_grow_ch=32, num_out_ch=3)
        with paddle.LazyGuard():
            net = RRDBNet(**config)
        assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {k: v.shape for k, v in state.items()}
    path = realesrnet_file(str(tmp_path), scale=4)
    save_torch({doc["wrapper_key"]: {k: np.zeros(v.shape, v.dtype) for k, v in state.items()}}, path)
    assert load_rrdbnet(path, scale=4).config == dict(scale=4, num_feat=32, num_block=23, num_grow_ch=32)


# ----------------------------------------------------------------------------------------------
# Without ../shared.

def random_state(net, seed):
    rng = np.random.default_rng(seed)
    return collections.OrderedDict((k, (rng.standard_normal(v.shape) * 0.1).astype(np.float32))
                                   for k, v in net.state_dict().items())


@pytest.mark.parametrize("scale", SCALES)
def test_authors_format_file_loads_with_its_architecture(tmp_path, scale):
    state = random_state(RRDBNet(scale, num_feat=4, num_block=1 + scale % 3, num_grow_ch=2), scale)
    path = realesrnet_file(str(tmp_path), scale=scale)
    assert path.endswith(f"realesrnet_x{scale}.pth")
    save_torch({"params_ema": state}, path)
    net = load_rrdbnet(path, scale=scale)
    assert net.config == dict(scale=scale, num_feat=4, num_block=1 + scale % 3, num_grow_ch=2)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key], err_msg=key)
    out = RealESRNet(net, tile_size=0, backend="dygraph").process(np.full((9, 7, 3), 128, np.uint8))
    assert out.shape == (9 * scale, 7 * scale, 3) and out.dtype == np.uint8


def test_wrong_files_are_refused_in_one_line(tmp_path):
    path = tmp_path / "realesrnet_x4.pth"
    save_torch({"params_ema": random_state(RRDBNet(4, num_feat=4, num_block=1, num_grow_ch=2), 0)}, str(path))
    with pytest.raises(UserError, match=r"realesrnet_x4.pth: holds an x4 Real-ESRNet, but x2 was asked for") as err:
        load_rrdbnet(str(path), scale=2)
    assert "\n" not in str(err.value)
    parse = tmp_path / "ParseNet-latest.pth"
    save_torch({"encoder.0.conv2d.weight": np.zeros((8, 3, 3, 3), np.float32)}, str(parse))
    with pytest.raises(UserError, match=r"ParseNet-latest.pth: not Real-ESRNet \(RRDBNet\) weights .*"
                                        r"expected the authors' realesrnet_x1.pth") as err:
        load_rrdbnet(str(parse))
    assert "\n" not in str(err.value)


def test_pixel_unshuffle_equals_basicsr_layout():
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 12)).astype(np.float32)
    for factor in (2, 4):
        ours = pixel_unshuffle(paddle.to_tensor(x), factor).numpy()
        n, c, h, w = x.shape
        # channel c·f² + i·f + j holds x[:, c, i::f, j::f]
        expected = np.stack([x[:, ch, i::factor, j::factor] for ch in range(c) for i in range(factor)
                             for j in range(factor)], axis=1)
        np.testing.assert_array_equal(ours, expected)


def test_plan_tiles_cover_the_image_once():
    for multiple in (1, 4):
        tiles = plan_tiles(104, 152, 32, 10, multiple)
        cover = np.zeros((104, 152), int)
        for tile in tiles:
            top, bottom, left, right = tile.target
            cover[top:bottom, left:right] += 1
            st, sb, sl, sr = tile.source
            assert st <= top and sb >= bottom and sl <= left and sr >= right
            assert all(v % multiple == 0 for v in tile.source)
        assert (cover == 1).all()
