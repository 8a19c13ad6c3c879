"""test.py's synthetic protocol end to end with a small generator on a few real faces: its numbers are the
metric functions applied to the files it saves, they repeat across runs, batch sizes and workers, and
a network that really computes batches of three gives the numbers of one face at a time."""
import csv
import json

import numpy as np
import pytest
from conftest import need_shared
from fid_helpers import fast_sqrtm, inception_weights  # noqa: F401  (fixtures)

from data_loader import degrade_test_face
from utils.errors import UserError
from utils.image_io import list_images, read_image

FACES = 5


@pytest.fixture(scope="module")
def weights(tiny_generator_weights):
    return tiny_generator_weights


def run(weights, tmp_path, *extra, faces=None):
    from test import main
    report = tmp_path / f"report_{len(list(tmp_path.iterdir()))}.json"
    faces = faces or need_shared("data", "celeba_hq")
    assert main(["-w", weights, "--test_path", str(faces), "--limit", str(FACES), "--report", str(report),
                 "--num_workers", "0", "--backend", "dygraph", *extra]) == 0
    return json.load(open(report)), report


def read_table(report_path):
    with open(str(report_path)[:-len(".json")] + "_per_image.csv") as f:
        return list(csv.DictReader(f))


def test_numbers_are_the_metrics_of_the_saved_files(weights, inception_weights, tmp_path, fast_sqrtm, capsys):
    from deploy.features import inception_features
    from metric.fid import compute_statistics, extract_features, frechet_distance
    from metric.psnr import psnr
    from metric.ssim import ssim_batch

    save = tmp_path / "saved"
    report, path = run(weights, tmp_path, "--batch_size", "3", "--inception_weights", inception_weights,
                       "--save_dir", str(save), "--no_niqe")
    assert report["protocol"] == "synthetic" and report["count"] == FACES
    rows = read_table(path)
    names = [row["name"] for row in rows]
    assert names == sorted(p.name[:-4] for p in (save / "restored").iterdir()) and len(names) == FACES
    restored = np.stack([read_image(str(save / "restored" / f"{n}.png")) for n in names])
    target = np.stack([read_image(str(save / "target" / f"{n}.png")) for n in names])
    sharp = np.stack([read_image(str(save / "sharp" / f"{n}.png")) for n in names])
    psnrs = [psnr(a, b) for a, b in zip(restored, target)]
    ssims = ssim_batch(restored, target).tolist()
    assert [float(row["psnr"]) for row in rows] == psnrs and [float(row["ssim"]) for row in rows] == ssims
    assert report["metrics"]["psnr"] == np.mean(psnrs) and report["metrics"]["ssim"] == np.mean(ssims)
    # FID: restored against the sharp faces at the model's size, features in test.py's batches of 3.
    features = inception_features(inception_weights, backend="dygraph")  # test.py's --backend
    with pytest.warns(UserWarning, match="fewer than 2048"):
        mu, sigma = compute_statistics(extract_features(features, restored, 3))
        mu_ref, sigma_ref = compute_statistics(extract_features(features, sharp, 3))
    assert report["metrics"]["fid"] == frechet_distance(mu, sigma, mu_ref, sigma_ref)
    assert report["fid_reference"] == "reference faces"
    printed = capsys.readouterr().out
    assert f"FID: {report['metrics']['fid']:.4f}" in printed and f"PSNR: {np.mean(psnrs):.4f}" in printed
    # The target is the ground truth the degradation made (gray when it turned the face gray).
    first = read_image(list_images(str(need_shared("data", "celeba_hq")))[0])
    from utils.imaging import resize_square
    np.testing.assert_array_equal(target[0], degrade_test_face(resize_square(first, 64), 0, 0).target)


def test_a_network_that_computes_batches_of_three_gives_the_numbers_of_one_face(weights):
    from data_loader.dataset import DegradedFaces, FirstFaces
    from deploy.runner import GeneratorRunner
    from metric.evaluation import Scorers, evaluate
    from model.loading import load_generator

    generator, _ = load_generator(weights)
    faces = FirstFaces(DegradedFaces(str(need_shared("data", "celeba_hq")), 64, seed=2), FACES)
    one = GeneratorRunner(generator, 64, backend="dygraph", compute_batch=1)
    whole = GeneratorRunner(generator, 64, backend="dygraph", compute_batch=None)
    seen = []

    def batch_of_three(x):
        seen.append(len(x))
        return whole(x)

    by_face = evaluate(faces, one, Scorers(), "synthetic", batch_size=1, progress=False)
    by_three = evaluate(faces, batch_of_three, Scorers(), "synthetic", batch_size=3, progress=False)
    assert seen == [3, 2]
    # Float32 sums in another order: the 8-bit faces may differ by one level in a few pixels, no more.
    np.testing.assert_allclose(by_three.per_face["psnr"], by_face.per_face["psnr"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(by_three.per_face["ssim"], by_face.per_face["ssim"], rtol=0, atol=1e-4)
    assert by_three.names == by_face.names


def test_every_face_is_scored_against_its_own_target_with_any_batch_and_workers(tmp_path):
    """With a network that returns its input, face i's PSNR is that of its own degraded and target images,
    whatever the batch size and the loader's workers."""
    from data_loader.dataset import DegradedFaces, FirstFaces
    from metric.evaluation import Scorers, evaluate
    from metric.psnr import psnr

    faces = FirstFaces(DegradedFaces(str(need_shared("data", "celeba_hq")), 32, seed=5), FACES)
    expected = [psnr(faces[i]["degraded"], faces[i]["target"]) for i in range(FACES)]
    for batch_size, workers in ((1, 0), (2, 0), (3, 2)):
        result = evaluate(faces, lambda x: x, Scorers(), "synthetic", batch_size=batch_size, num_workers=workers,
                          progress=False)
        assert result.per_face["psnr"].tolist() == expected, (batch_size, workers)


def test_report_records_what_made_the_numbers_and_runs_repeat(weights, tmp_path, capsys):
    report, _ = run(weights, tmp_path, "--seed", "4", "--batch_size", "2", "--no_niqe")
    err = capsys.readouterr().err  # no Inception weights: FID skipped, saying what it needs
    assert "pt_inception-2015-12-05-6726825d.pth" in err and "convert_weights.py" in err
    assert report["count"] == FACES and report["seed"] == 4 and report["protocol"] == "synthetic"
    assert len(report["weights"]["sha256"]) == 64
    assert report["config"]["model"]["size"] == 64
    assert {"paddle", "python", "numpy"} <= set(report["versions"])
    assert "fid" not in report["metrics"] and report["fid_reference"] is None
    again, _ = run(weights, tmp_path, "--seed", "4", "--batch_size", "3", "--no_niqe")
    assert again["metrics"]["psnr"] == report["metrics"]["psnr"] and again["metrics"]["ssim"] == report["metrics"]["ssim"]
    different_seed, _ = run(weights, tmp_path, "--seed", "5", "--no_niqe")
    assert different_seed["metrics"]["psnr"] != report["metrics"]["psnr"]


def test_niqe_of_faces_too_small_for_it_is_counted_not_averaged(weights, tmp_path, capsys):
    report, path = run(weights, tmp_path)  # 64-px faces: fewer than two 96x96 blocks
    assert report["counts"]["niqe_undefined"] == FACES and "niqe" not in report["metrics"]
    assert [row["niqe"] for row in read_table(path)] == [""] * FACES
    assert "NIQE: undefined (5 faces too small or too flat" in capsys.readouterr().out


def test_fid_refuses_fewer_than_two_faces(weights, inception_weights, tmp_path):
    from test import main
    with pytest.raises(UserError, match="FID needs at least 2 faces to estimate a covariance; the test set gives 1"):
        main(["-w", weights, "--test_path", str(need_shared("data", "celeba_hq")), "--limit", "1",
              "--inception_weights", inception_weights, "--report", str(tmp_path / "r.json")])


@pytest.mark.parametrize("flags,message", [
    (["--test_path", "a", "--lq_path", "b"], "--test_path .* and --lq_path .* are two protocols: pass one of them"),
    (["--hq_path", "b"], "--hq_path is the ground truth of --lq_path: pass the LQ folder too"),
    ([], "no test faces given: pass --test_path"),
])
def test_the_protocol_is_chosen_by_the_folders_given(weights, flags, message):
    from test import main
    with pytest.raises(UserError, match=message):
        main(["-w", weights, *flags])
