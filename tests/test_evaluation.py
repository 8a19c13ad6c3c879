"""test.py end to end with a small generator on a few real faces: every number repeats to the last digit
across runs and batch sizes; FID needs its weights and at least two faces."""
import json

import pytest
from conftest import need_shared

from utils.errors import UserError


@pytest.fixture(scope="module")
def weights(tiny_generator_weights):
    return tiny_generator_weights


def run(weights, tmp_path, *extra):
    from test import main
    report = tmp_path / f"report_{len(list(tmp_path.iterdir()))}.json"
    faces = need_shared("data", "celeba_hq")
    assert main(["-w", weights, "--test_path", str(faces), "--limit", "5", "--report", str(report),
                 "--num_workers", "0", *extra]) == 0
    return json.load(open(report))


def test_metrics_repeat_across_runs_and_batch_sizes(weights, tmp_path, capsys):
    inception = str(need_shared("fixtures", "fid_inception", "pt_inception_random.pth"))
    by_batch = {b: run(weights, tmp_path, "--batch_size", str(b), "--inception_weights", inception)["metrics"]
                for b in (1, 3)}
    for key in ("psnr", "ssim", "fid"):
        assert by_batch[1][key] == by_batch[3][key], key
    printed = capsys.readouterr().out
    assert "FID: " in printed and "PSNR: " in printed and "SSIM: " in printed


def test_report_records_what_made_the_numbers_and_runs_repeat(weights, tmp_path, capsys):
    report = run(weights, tmp_path, "--seed", "4", "--batch_size", "2")
    err = capsys.readouterr().err  # no Inception weights: FID skipped, saying what it needs
    assert "pt_inception-2015-12-05-6726825d.pth" in err and "convert_weights.py" in err
    assert report["count"] == 5 and report["seed"] == 4
    assert len(report["weights"]["sha256"]) == 64
    assert report["config"]["model"]["size"] == 64
    assert {"paddle", "python", "numpy"} <= set(report["versions"])
    assert "fid" not in report["metrics"]  # no Inception weights given
    again = run(weights, tmp_path, "--seed", "4", "--batch_size", "2")
    assert again["metrics"]["psnr"] == report["metrics"]["psnr"] and again["metrics"]["ssim"] == report["metrics"]["ssim"]
    different_seed = run(weights, tmp_path, "--seed", "5")
    assert different_seed["metrics"]["psnr"] != report["metrics"]["psnr"]


def test_fid_refuses_fewer_than_two_faces(weights, tmp_path):
    from test import main
    inception = str(need_shared("fixtures", "fid_inception", "pt_inception_random.pth"))
    with pytest.raises(UserError, match="2"):
        main(["-w", weights, "--test_path", str(need_shared("data", "celeba_hq")), "--limit", "1",
              "--inception_weights", inception, "--report", str(tmp_path / "r.json")])
