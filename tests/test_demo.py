"""demo.py: the authors' four README commands, their flags and their output files, on small random
networks the test writes under the authors' file names (no file is downloaded)."""
import collections
import os
import shlex

import numpy as np
import paddle
import pytest
from torch_format import save_torch

import demo
from utils.errors import UserError

# The authors' README commands, as written.
README_COMMANDS = [
    "python demo.py --task FaceEnhancement --model GPEN-BFR-512 --in_size 512 --channel_multiplier 2 --narrow 1 "
    "--use_sr --sr_scale 4 --use_cuda --save_face --indir examples/imgs --outdir examples/outs-bfr",
    "python demo.py --task FaceColorization --model GPEN-Colorization-1024 --in_size 1024 --use_cuda "
    "--indir examples/grays --outdir examples/outs-colorization",
    "python demo.py --task FaceInpainting --model GPEN-Inpainting-1024 --in_size 1024 --use_cuda "
    "--indir examples/ffhq-10 --outdir examples/outs-inpainting",
    "python demo.py --task Segmentation2Face --model GPEN-Seg2face-512 --in_size 512 --use_cuda "
    "--indir examples/segs --outdir examples/outs-seg2face",
]


def _argv(command):
    return shlex.split(command)[2:]


def test_readme_commands_ask_for_the_authors_networks():
    """What the authors' demo.py builds for each command (FaceEnhancement(args, in_size=...),
    FaceColorization(in_size=...) with its out_size 1024, ...), and the files it loads."""
    plans = [demo.make_plan(demo.parse_args(_argv(c))) for c in README_COMMANDS]
    enhance, color, inpaint, seg = plans
    g = enhance.generator
    assert (g.path, g.in_size, g.out_size, g.channel_multiplier, g.narrow, g.widths_from_flags, g.normalized) == \
        (os.path.join("weights", "GPEN-BFR-512.pth"), 512, 512, 2, 1.0, True, True)
    assert enhance.detector == os.path.join("weights", "RetinaFace-R50.pth")
    assert enhance.parser == os.path.join("weights", "ParseNet-latest.pth")
    assert (enhance.sr, enhance.sr_scale, enhance.tile_size) == (os.path.join("weights", "realesrnet_x4.pth"), 4, None)
    for plan, name in ((color, "GPEN-Colorization-1024"), (inpaint, "GPEN-Inpainting-1024")):
        g = plan.generator
        assert (g.path, g.in_size, g.out_size, g.channel_multiplier, g.narrow, g.normalized) == \
            (os.path.join("weights", name + ".pth"), 1024, 1024, 2, 1.0, True)
        assert plan.detector is plan.parser is plan.sr is None
    g = seg.generator
    assert (g.path, g.in_size, g.out_size, g.normalized) == (os.path.join("weights", "GPEN-Seg2face-512.pth"), 512,
                                                              512, False)
    # their classes default out_size to 1024: --in_size 512 colorization is FullGenerator_SR(512, 1024)
    color512 = demo.make_plan(demo.parse_args(["--task", "FaceColorization", "--in_size", "512"]))
    assert color512.generator.out_size == 1024
    # with --authors: the whole photo at once (their --tile_size 0) and --out_size ignored
    authors = demo.make_plan(demo.parse_args(_argv(README_COMMANDS[0]) + ["--authors", "--out_size", "1024"]))
    assert authors.tile_size == 0 and authors.generator.out_size == 512 and authors.notes


def test_dry_run_names_the_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert demo.main(_argv(README_COMMANDS[0]) + ["--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "GPEN 512" in out and "RetinaFace-R50.pth  (MISSING)" in out and "realesrnet_x4.pth" in out


# ----------------------------------------------------------------------------------------------
# Small random networks under the authors' names.

def _torch_layout(layer):
    """A Paddle layer's state dict as the authors' torch files hold it (BatchNorm names and counters)."""
    out = collections.OrderedDict()
    for key, value in layer.state_dict().items():
        value = value.numpy()
        if key.endswith("._mean"):
            out[key[:-len("_mean")] + "running_mean"] = value
        elif key.endswith("._variance"):
            out[key[:-len("_variance")] + "running_var"] = value
            out[key[:-len("_variance")] + "num_batches_tracked"] = np.array(0, np.int64)
        else:
            out[key] = value
    return out


def _generator(path, out_size, in_size=None):
    from model.generator import FullGenerator

    g = FullGenerator(out_size, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.0625, in_size=in_size)
    save_torch(_torch_layout(g), str(path))


def _retinaface(path):
    """mobilenet0.25 RetinaFace whose heads ignore the image: only the 256 px anchors of the stride-32
    level score as faces (0.95), with the boxes on their anchors and five face points inside them, so a
    few faces of known geometry are found in any photo."""
    from faces.align import template
    from faces.retinaface import RetinaFace

    net = RetinaFace("mobilenet0.25", 64)
    state = _torch_layout(net)
    for level in range(3):
        for head, values in (("ClassHead", 2), ("BboxHead", 4), ("LandmarkHead", 10)):
            weight = state[f"{head}.{level}.conv1x1.weight"]
            state[f"{head}.{level}.conv1x1.weight"] = np.zeros_like(weight)
            bias = np.zeros(weight.shape[0], np.float32)
            if head == "ClassHead":  # (background, face) logits per anchor
                bias[:] = [3.0, -3.0] * 2
                if level == 2:
                    bias[:2] = [-1.5, 1.5]  # anchor 0 of stride 32: 256 px, p(face) = 0.95
            if head == "LandmarkHead":  # offsets from the anchor centre in units of 0.1 x its side
                bias[:] = np.tile(((template(1.0) - 0.5) / 0.1).ravel(), 2)
            state[f"{head}.{level}.conv1x1.bias"] = bias
    save_torch({"module." + k: v for k, v in state.items()}, str(path))


def _parsenet(path):
    from faces.parsenet import ParseNet

    save_torch(_torch_layout(ParseNet(base_ch=4, parsing_ch=19, res_depth=1, ch_range=(4, 8))), str(path))


def _realesrnet(path, scale):
    from faces.realesrnet import RRDBNet

    save_torch({"params_ema": _torch_layout(RRDBNet(scale, num_feat=4, num_block=1, num_grow_ch=4))}, str(path))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder laid out as the authors' repository: weights/ and examples/ with small inputs."""
    import cv2

    paddle.seed(11)
    root = tmp_path_factory.mktemp("gpen_demo")
    weights = root / "weights"
    weights.mkdir()
    _generator(weights / "GPEN-BFR-512.pth", 64)
    _generator(weights / "GPEN-Colorization-1024.pth", 64, in_size=32)  # an SR generator (in 32, out 64)
    _generator(weights / "GPEN-Inpainting-1024.pth", 64)
    _generator(weights / "GPEN-Seg2face-512.pth", 64)
    _retinaface(weights / "RetinaFace-R50.pth")
    _parsenet(weights / "ParseNet-latest.pth")
    _realesrnet(weights / "realesrnet_x4.pth", 4)
    rng = np.random.default_rng(5)
    inputs = {"imgs": [("photo.png", (48, 64))], "grays": [("g1_gray.png", (80, 80))],
              "ffhq-10": [("00000.png", (64, 64)), ("00001.png", (64, 64))], "segs": [("seg.png", (64, 64))]}
    for folder, files in inputs.items():
        (root / "examples" / folder).mkdir(parents=True)
        for name, shape in files:
            image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
            if folder == "grays":
                image = np.repeat(image[:, :, :1], 3, axis=2)
            cv2.imwrite(str(root / "examples" / folder / name), image)
    return root


# The README commands with the small networks' sizes (and widths, where the authors take them from flags).
SMALL = [
    ("--in_size 512 --channel_multiplier 2 --narrow 1", "--in_size 64 --channel_multiplier 1 --narrow 0.0625"),
    ("--in_size 1024", "--in_size 32 --out_size 64"),
    ("--in_size 1024", "--in_size 64 --out_size 64"),
    ("--in_size 512", "--in_size 64"),
]


def _run_small(index, extra=()):
    command = README_COMMANDS[index].replace(*SMALL[index])
    return demo.main(_argv(command) + ["--backend", "dygraph", *extra])


def _read(path):
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def test_face_enhancement_command(workdir, monkeypatch, capsys):
    import cv2

    monkeypatch.chdir(workdir)
    assert _run_small(0) == 0
    out = capsys.readouterr().out
    if not paddle.device.is_compiled_with_cuda():
        assert "--use_cuda: this Paddle has no usable GPU" in out
    outdir = workdir / "examples" / "outs-bfr"
    names = sorted(os.listdir(outdir))
    faces = [n for n in names if n.startswith("photo_face")]
    assert "photo_COMP.jpg" in names and "photo_GPEN.jpg" in names and faces
    assert faces == [f"photo_face{m:02d}.jpg" for m in range(len(faces))]
    assert f"{len(faces)} faces" in out or "1 face" in out
    assert _read(outdir / "photo_GPEN.jpg").shape == (4 * 48, 4 * 64, 3)  # x4 SR, exactly 4x the photo
    comp = _read(outdir / "photo_COMP.jpg").astype(int)
    assert comp.shape == (4 * 48, 2 * 4 * 64, 3)
    photo = _read(workdir / "examples" / "imgs" / "photo.png")
    before = cv2.resize(photo, (4 * 64, 4 * 48)).astype(int)  # theirs: the input resized to the output
    assert np.abs(comp[:, :256] - before).mean() < np.abs(comp[:, 256:] - before).mean() / 2
    assert _read(outdir / faces[0]).shape == (64, 128, 3)  # crop | restored, at in_size


@pytest.mark.parametrize("index,outdir,names,shape", [
    (1, "outs-colorization", ["g1_gray"], (80, 80)),   # output resized to the gray input, its Y kept
    (2, "outs-inpainting", ["00000", "00001"], (64, 64)),
    (3, "outs-seg2face", ["seg"], (64, 64)),
])
def test_task_commands(workdir, monkeypatch, index, outdir, names, shape):
    monkeypatch.chdir(workdir)
    assert _run_small(index) == 0
    folder = workdir / "examples" / outdir
    assert sorted(os.listdir(folder)) == sorted(f"{n}_{kind}.jpg" for n in names for kind in ("COMP", "GPEN"))
    for name in names:
        assert _read(folder / f"{name}_GPEN.jpg").shape == shape + (3,)
        assert _read(folder / f"{name}_COMP.jpg").shape == (shape[0], 2 * shape[1], 3)


def test_inpainting_strokes_repeat_with_the_seed(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    comps = []
    for outdir in ("a", "b"):
        assert _run_small(2, ["--outdir", outdir, "--ext", ".png", "--seed", "3"]) == 0
        comps.append(_read(workdir / outdir / "00000_COMP.png"))
    np.testing.assert_array_equal(*comps)
    assert (comps[0][:, :64] == 255).all(axis=2).any()  # white strokes on the input half


def test_missing_weights_and_bad_flags_are_one_line(workdir, monkeypatch, tmp_path):
    monkeypatch.chdir(workdir)
    with pytest.raises(UserError, match="weights file not found: .*GPEN-BFR-2048.pth .*--weights_dir"):
        demo.main(["--model", "GPEN-BFR-2048", "--indir", "examples/imgs", "--outdir", str(tmp_path)])
    with pytest.raises(UserError, match="narrow"):  # the file is narrow 0.0625, the flags say 1
        demo.main(["--in_size", "64", "--channel_multiplier", "1", "--indir", "examples/imgs",
                   "--outdir", str(tmp_path), "--backend", "dygraph"])
    with pytest.raises(UserError, match="in_size 64"):
        demo.main(["--task", "Segmentation2Face", "--model", "GPEN-Seg2face-512", "--indir", "examples/segs",
                   "--outdir", str(tmp_path), "--backend", "dygraph"])
    with pytest.raises(UserError, match="not a folder"):
        demo.main(["--indir", "nowhere", "--outdir", str(tmp_path)])


# ----------------------------------------------------------------------------------------------
# predict.py / infer.py with the same choices.

def test_predict_runs_the_authors_face_enhancement(workdir, tmp_path, capsys):
    import predict

    w = workdir / "weights"
    common = ["--w", str(w / "GPEN-BFR-512.pth"), "--img", str(workdir / "examples" / "imgs"), "--detector",
              "retinaface", "--detector_model", str(w / "RetinaFace-R50.pth"), "--parsing_weights",
              str(w / "ParseNet-latest.pth"), "--output", str(tmp_path), "--backend", "dygraph"]
    with pytest.raises(UserError, match="x4 Real-ESRNet"):  # the file's scale is checked
        predict.main(common + ["--sr_weights", str(w / "realesrnet_x4.pth"), "--sr_scale", "2"])
    assert predict.main(common + ["--save_faces"]) == 0  # (SR: see the demo's test)
    out = capsys.readouterr().out
    assert "pipeline: the authors' FaceEnhancement: retinaface" in out and "no SR" in out
    assert _read(tmp_path / "photo.png").shape == (48, 64, 3)
    assert (tmp_path / "photo_face00.png").is_file()


def test_predict_and_infer_run_the_other_tasks(workdir, tmp_path, capsys):
    import cv2

    import export_model
    import infer
    import predict

    w = workdir / "weights"
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 10:50] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    face = workdir / "examples" / "ffhq-10" / "00000.png"
    assert predict.main(["--w", str(w / "GPEN-Inpainting-1024.pth"), "--img", str(face), "--task", "FaceInpainting",
                         "--mask", str(tmp_path / "mask.png"), "--output", str(tmp_path / "p"),
                         "--backend", "dygraph"]) == 0
    assert "pipeline: the authors' FaceInpainting, mask image" in capsys.readouterr().out
    compare = _read(tmp_path / "p" / "00000_compare.jpg")
    assert compare.shape == (64, 128, 3) and (compare[25:35, 15:45] > 230).all()  # the input half, painted white
    # infer.py: the exported Seg2Face generator
    assert export_model.main(["--model_path", str(w / "GPEN-Seg2face-512.pth"), "--save_dir", str(tmp_path / "e")]) == 0
    assert infer.main(["--model_dir", str(tmp_path / "e"), "--img", str(workdir / "examples" / "segs"),
                       "--task", "Segmentation2Face", "--output", str(tmp_path / "i")]) == 0
    assert "pipeline: the authors' Segmentation2Face" in capsys.readouterr().out
    assert _read(tmp_path / "i" / "seg.png").shape == (64, 64, 3)
