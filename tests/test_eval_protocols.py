"""test.py's paired and no-reference protocols on small folders laid out like the published sets (CelebA-Test:
celeba_512_validation_lq/ + celeba_512_validation/, pairs made once from ../shared/data/celeba_hq; LFW-Test
style LQ-only faces from ../shared/data/lq_real), run from the README's commands: every number equals the
metric functions applied to the files test.py saves. A 256-px generator, so that NIQE (two 96x96 blocks)
is defined."""
import csv
import json
import shutil

import cv2
import numpy as np
import pytest
from conftest import need_shared
from fid_helpers import fast_sqrtm, inception_weights  # noqa: F401  (fixtures)

from data_loader import degrade_test_face
from utils.errors import UserError
from utils.image_io import list_images, read_image, write_image
from utils.imaging import resize_square

SIZE = 256
PAIRS = 3


@pytest.fixture(scope="module")
def generator_weights(tmp_path_factory):
    """A 256-px GPEN at narrow 0.0625 (4 channels at full size), encoder features let through."""
    import paddle

    from model import FullGenerator

    paddle.seed(11)
    generator = FullGenerator(SIZE, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.0625)
    for layer in generator.generator.convs:
        layer.noise.weight.set_value(paddle.to_tensor([0.5]))
    path = tmp_path_factory.mktemp("g256") / "G256.pdparams"
    paddle.save(generator.state_dict(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def celeba_test(tmp_path_factory):
    """CelebA-Test's layout: LQ faces made once by the test-time degradation and saved, the ground truth
    beside them under the same names, plus one ground truth without an LQ face."""
    root = tmp_path_factory.mktemp("celeba")
    sources = list_images(str(need_shared("data", "celeba_hq")))[:PAIRS + 1]
    for i, path in enumerate(sources):
        sharp = resize_square(read_image(path), SIZE)
        name = f"{i:08d}.png"
        write_image(str(root / "celeba_512_validation" / name), sharp)
        if i < PAIRS:
            write_image(str(root / "celeba_512_validation_lq" / name), degrade_test_face(sharp, 0, i).degraded)
    return root / "celeba_512_validation_lq", root / "celeba_512_validation"


@pytest.fixture(scope="module")
def lq_only(tmp_path_factory):
    """Three real low-quality 512-px faces without ground truth (LFW-Test / WebPhoto-Test style)."""
    folder = tmp_path_factory.mktemp("lfw") / "lfw_cropped_faces"
    folder.mkdir()
    for path in list_images(str(need_shared("data", "lq_real")))[:3]:
        shutil.copy(path, folder)
    return folder


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    """LPIPS heads and backbone with random weights, as converted .pdparams."""
    import paddle

    from metric.lpips import LPIPS

    paddle.seed(3)
    state = LPIPS().state_dict()
    folder = tmp_path_factory.mktemp("lpips")
    heads, backbone = str(folder / "alex_heads.pdparams"), str(folder / "alexnet.pdparams")
    paddle.save({k: v for k, v in state.items() if k.startswith("lin")}, heads)
    paddle.save({k: v for k, v in state.items() if k.startswith("features.")}, backbone)
    return heads, backbone


def run(generator_weights, tmp_path, *flags):
    from test import main
    report = tmp_path / "report.json"
    assert main(["-w", generator_weights, *flags, "--save_dir", str(tmp_path / "saved"), "--report", str(report),
                 "--batch_size", "2", "--backend", "dygraph"]) == 0
    with open(tmp_path / "report_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    return json.load(open(report)), rows, tmp_path / "saved"


def saved(folder, rows):
    return np.stack([read_image(str(folder / f"{row['name']}.png")) for row in rows])


def check_niqe(rows, restored, report):
    from metric.niqe import niqe

    values = [niqe(np.ascontiguousarray(face[:, :, ::-1])) for face in restored]  # BGR, as cv2.imread gives
    assert [float(row["niqe"]) for row in rows] == values
    assert report["metrics"]["niqe"] == np.mean(values) and report["counts"]["niqe_undefined"] == 0


def test_paired_protocol_scores_the_saved_pairs(generator_weights, celeba_test, lpips_files, tmp_path):
    import paddle

    from loss.id_loss import IDLoss
    from metric.lpips import load_lpips, lpips_batch
    from metric.psnr import psnr
    from metric.ssim import ssim_batch

    lq, hq = celeba_test
    id_weights = str(need_shared("fixtures", "irse50", "model_ir_se50_random.pth"))
    report, rows, folder = run(generator_weights, tmp_path, "--lq_path", str(lq), "--hq_path", str(hq),
                               "--id_weights", id_weights, "--lpips_weights", lpips_files[0],
                               "--lpips_backbone", lpips_files[1])
    assert report["protocol"] == "paired" and report["count"] == PAIRS
    assert report["counts"]["hq_without_lq"] == 1  # 00000003 has no LQ face: left out, counted
    assert [row["name"] for row in rows] == [f"{i:08d}" for i in range(PAIRS)]
    restored, target = saved(folder / "restored", rows), saved(folder / "target", rows)
    np.testing.assert_array_equal(target, saved(hq, rows))  # the ground truth, already at the model's size
    assert [float(r["psnr"]) for r in rows] == [psnr(a, b) for a, b in zip(restored, target)]
    assert [float(r["ssim"]) for r in rows] == ssim_batch(restored, target).tolist()
    assert report["metrics"]["psnr"] == np.mean([float(r["psnr"]) for r in rows])
    check_niqe(rows, restored, report)
    # Networks on the device: recomputed one pair at a time here, in batches of 2 there (float32 sums).
    lpips = load_lpips(*lpips_files)
    np.testing.assert_allclose([float(r["lpips"]) for r in rows],
                               [lpips_batch(lpips, a[None], b[None])[0] for a, b in zip(restored, target)],
                               rtol=1e-5)
    from utils.imaging import to_network
    cosine = IDLoss(id_weights).similarity(paddle.to_tensor(to_network(restored)),
                                           paddle.to_tensor(to_network(target))).numpy().astype(np.float64)
    np.testing.assert_allclose([float(r["identity_distance"]) for r in rows], 1 - cosine, rtol=0, atol=1e-6)
    np.testing.assert_allclose([float(r["identity_degrees"]) for r in rows], np.degrees(np.arccos(cosine)),
                               rtol=0, atol=1e-3)
    assert report["metrics"]["identity_degrees"] == np.mean([float(r["identity_degrees"]) for r in rows])


def test_paired_inputs_are_the_lq_files_resized_bilinear(generator_weights, celeba_test, tmp_path):
    """A 128-px LQ folder for the 256-px model: each face is cv2.resize(lq, (256, 256), INTER_LINEAR) fed
    to the generator (here in dygraph, one face at a time), with no degradation added."""
    from deploy.runner import GeneratorRunner
    from model.loading import load_generator
    from utils.imaging import to_images, to_network

    lq, hq = celeba_test
    small = tmp_path / "lq_128"
    for path in list_images(str(lq)):
        write_image(str(small / path.split("/")[-1]), cv2.resize(read_image(path), (128, 128),
                                                                    interpolation=cv2.INTER_AREA))
    report, rows, folder = run(generator_weights, tmp_path, "--lq_path", str(small), "--hq_path", str(hq),
                               "--no_niqe")
    generator, _ = load_generator(generator_weights)
    inputs = np.stack([cv2.resize(read_image(str(small / f"{r['name']}.png")), (SIZE, SIZE),
                                  interpolation=cv2.INTER_LINEAR) for r in rows])
    expected = to_images(GeneratorRunner(generator, SIZE, backend="dygraph", compute_batch=1)(to_network(inputs)))
    np.testing.assert_array_equal(saved(folder / "restored", rows), expected)


def test_an_lq_face_without_its_ground_truth_is_refused(generator_weights, celeba_test, tmp_path):
    from test import main

    lq, hq = celeba_test
    partial = tmp_path / "hq"
    shutil.copytree(hq, partial)
    (partial / "00000001.png").unlink()
    with pytest.raises(UserError, match=r"1 of the 3 LQ faces under .* have no ground truth of the same name "
                                        r"under .*: 00000001$"):
        main(["-w", generator_weights, "--lq_path", str(lq), "--hq_path", str(partial)])


def test_no_reference_protocol_scores_niqe_and_fid_of_the_saved_faces(generator_weights, lq_only, tmp_path,
                                                                      inception_weights, fast_sqrtm):
    from deploy.features import inception_features
    from metric.evaluation import file_sha256
    from metric.fid import compute_statistics, extract_features, frechet_distance, load_statistics

    inception = inception_weights
    statistics = str(need_shared("fixtures", "fid_stats", "inception_FFHQ_512_random.pth"))
    report, rows, folder = run(generator_weights, tmp_path, "--lq_path", str(lq_only), "--inception_weights",
                               inception, "--fid_stats", statistics)
    assert report["protocol"] == "no_reference" and report["count"] == 3
    assert set(rows[0]) == {"name", "niqe"} and not (folder / "target").exists()
    restored = saved(folder / "restored", rows)
    check_niqe(rows, restored, report)
    with pytest.warns(UserWarning, match="fewer than 2048"):
        mu, sigma = compute_statistics(extract_features(inception_features(inception, backend="dygraph"), restored, 2))
    assert report["metrics"]["fid"] == frechet_distance(mu, sigma, *load_statistics(statistics))
    assert report["fid_reference"]["sha256"] == file_sha256(statistics)


def test_no_reference_fid_needs_statistics(generator_weights, lq_only, inception_weights):
    from test import main

    with pytest.raises(UserError, match="FID without ground truth needs reference statistics: pass --fid_stats"):
        main(["-w", generator_weights, "--lq_path", str(lq_only), "--inception_weights", inception_weights])
