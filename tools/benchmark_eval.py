"""Seconds per face of test.py's three protocols at 512 on this machine, and the estimate for CelebA-Test.

    python tools/benchmark_eval.py [--faces 4] [--threads 2] [--backend auto] [--out output/benchmark_eval.json]

GPEN-512 (mul 2, narrow 1, configs/gpen_512.yaml) with random weights (speed does not depend on the values),
every metric on: FID features (the fixture Inception when ../shared is present, else random weights),
LPIPS (random AlexNet + heads), ArcFace IR-SE50 (the fixture's random weights, else random), NIQE. The
networks are built once (their set-up is timed apart), then `metric.evaluation.evaluate` runs each
protocol on --faces faces: synthetic (CelebA-HQ faces degraded here), paired (the same faces degraded once
and saved, CelebA-Test's layout) and no reference (real LQ faces, FID against statistics). The time
inside each network and NIQE is summed per face; NIQE runs in evaluate's worker thread, beside the
networks, so the parts can add up to more than the whole. FID's final Fréchet distance (one sqrtm of a
2048² matrix, once per evaluation) is timed on full-rank statistics. The estimate for CelebA-Test's 3,000
pairs is set-up (export, loading, the first checked call of each network, which also runs its dygraph
reference) + 3,000 x seconds per face (paired) + the Fréchet distance. The load average is printed:
this CPU is shared, so figures drift with it.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CELEBA_TEST_PAIRS = 3000


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=4, help="faces per protocol")
    parser.add_argument("--batch_size", type=int, default=4, help="eval.batch_size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", choices=("auto", "dygraph", "predictor"), default="auto")
    parser.add_argument("--out", default="output/benchmark_eval.json", help="JSON report (output/ is git-ignored)")
    return parser.parse_args(argv)


class Timed:
    """Wrap a callable (or an object's method) and add the seconds spent in it to a counter."""

    def __init__(self, totals, name):
        self.totals, self.name = totals, name
        totals.setdefault(name, 0.0)

    def wrap(self, fn):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[self.name] += time.perf_counter() - started
        return timed


class TimedIdentity:
    """An IDLoss stand-in that times `similarity` (what evaluate calls)."""

    def __init__(self, id_loss, totals):
        self.similarity = Timed(totals, "arcface").wrap(id_loss.similarity)


def _load():
    return os.getloadavg()


def _random_weights(folder):
    """Weight files for every network: fixtures where ../shared has them, random ones otherwise."""
    import paddle

    from loss.arcface import Backbone
    from metric.inception import FIDInceptionV3
    from metric.lpips import LPIPS
    from model.loading import build_generator
    from utils.config import load_config

    paddle.seed(0)
    files = {"generator": str(folder / "G512.pdparams")}
    model_cfg = load_config(str(ROOT / "configs" / "gpen_512.yaml")).model
    paddle.save(build_generator(model_cfg).state_dict(), files["generator"])
    state = LPIPS().state_dict()
    files["lpips_heads"], files["lpips_backbone"] = str(folder / "heads.pdparams"), str(folder / "alexnet.pdparams")
    paddle.save({k: v for k, v in state.items() if k.startswith("lin")}, files["lpips_heads"])
    paddle.save({k: v for k, v in state.items() if k.startswith("features.")}, files["lpips_backbone"])
    for name, fixture, network in (("inception", ("fid_inception", "pt_inception_random.pth"), FIDInceptionV3),
                                   ("arcface", ("irse50", "model_ir_se50_random.pth"), Backbone)):
        path = SHARED.joinpath("fixtures", *fixture)
        if not path.exists():  # random weights of our own
            path = folder / f"{name}.pdparams"
            paddle.save(network().state_dict(), str(path))
        files[name] = str(path)
    return files


def _folders(folder, count):
    """CelebA-HQ faces (synthetic), CelebA-Test-like pairs made from them, real LQ faces (no reference)."""
    from data_loader import degrade_test_face
    from utils.image_io import list_images, read_image, write_image
    from utils.imaging import resize_square

    sharp = SHARED / "data" / "celeba_hq"
    for i, path in enumerate(list_images(str(sharp))[:count]):
        face = resize_square(read_image(path), 512)
        write_image(str(folder / "celeba_512_validation" / f"{i:08d}.png"), face)
        write_image(str(folder / "celeba_512_validation_lq" / f"{i:08d}.png"), degrade_test_face(face, 0, i).degraded)
    return sharp, folder / "celeba_512_validation_lq", folder / "celeba_512_validation", SHARED / "data" / "lq_real"


def main(argv=None):
    args = parse_args(argv)
    from utils.runtime import prepare_cpu

    prepare_cpu(args.threads)
    import numpy as np
    import paddle

    import metric.niqe
    from data_loader.dataset import DegradedFaces, FirstFaces, LowQualityFaces, PairedFaces
    from deploy.features import inception_features
    from deploy.runner import GeneratorRunner
    from loss.id_loss import IDLoss
    from metric.evaluation import Scorers, evaluate
    from metric.fid import frechet_distance, load_statistics
    from metric.lpips import load_lpips
    from model.loading import load_generator
    from utils.errors import UserError

    if not (SHARED / "data").exists():
        raise UserError(f"the benchmark's faces come from {SHARED / 'data'}, which is not beside this clone")
    paddle.set_device("cpu")
    load_before = _load()
    report = {"settings": vars(args), "load_average_before": load_before,
              "versions": {"paddle": paddle.__version__, "numpy": np.__version__, "python": platform.python_version()},
              "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory(prefix="gpen_bench_eval_") as tmp:
        tmp = Path(tmp)
        files = _random_weights(tmp)
        sharp, lq, hq, lq_real = _folders(tmp, args.faces)
        setup = {}
        started = time.perf_counter()
        generator, model_cfg = load_generator(files["generator"])
        runner = GeneratorRunner(generator, 512, backend=args.backend, threads=args.threads)
        setup["generator"] = time.perf_counter() - started
        started = time.perf_counter()
        features = inception_features(files["inception"], backend=args.backend, threads=args.threads)
        setup["inception"] = time.perf_counter() - started
        started = time.perf_counter()
        id_loss = IDLoss(files["arcface"])
        setup["arcface"] = time.perf_counter() - started
        started = time.perf_counter()
        lpips = load_lpips(files["lpips_heads"], files["lpips_backbone"])
        setup["lpips"] = time.perf_counter() - started
        statistics_file = SHARED / "fixtures" / "fid_stats" / "inception_FFHQ_512_random.pth"
        started = time.perf_counter()
        statistics = load_statistics(str(statistics_file))
        setup["fid_statistics_pth"] = time.perf_counter() - started
        # The first call of a checked network also runs its dygraph reference (the agreement check): set-up.
        started = time.perf_counter()
        runner(np.zeros((1, 3, 512, 512), np.float32))
        features(np.zeros((1, 3, 512, 512), np.float32))
        setup["first_checked_calls"] = time.perf_counter() - started
        report["setup_seconds"] = setup
        report["backends"] = {"generator": runner.backend, "inception": features.backend}

        protocols = {
            "synthetic": DegradedFaces(str(sharp), 512, "area", None, seed=0),
            "paired": PairedFaces(str(lq), str(hq), 512),
            "no_reference": LowQualityFaces(str(lq_real), 512),
        }
        real_niqe = metric.niqe.niqe
        report["protocols"] = {}
        for name, faces in protocols.items():
            faces = FirstFaces(faces, args.faces)
            parts = {}
            metric.niqe.niqe = Timed(parts, "niqe").wrap(real_niqe)  # evaluate's NIQE worker looks it up per call
            scorers = Scorers(features=Timed(parts, "fid_features").wrap(features), niqe=True,
                              fid_reference=statistics if name == "no_reference" else None)
            if name != "no_reference":
                scorers.identity = TimedIdentity(id_loss, parts)
                scorers.lpips = Timed(parts, "lpips").wrap(lpips)
            run = Timed(parts, "generator").wrap(runner)
            result = evaluate(faces, run, scorers, name, batch_size=args.batch_size, num_workers=0, progress=False)
            n = len(faces)
            report["protocols"][name] = {
                "faces": n, "seconds": result.seconds, "seconds_per_face": result.seconds / n,
                "parts_seconds_per_face": {k: v / n for k, v in parts.items()}, "means": result.means}
            print(f"{name:13s} {n} faces: {result.seconds / n:6.2f} s per face  ("
                  + ", ".join(f"{k} {v / n:.2f}" for k, v in parts.items()) + ")", flush=True)
        metric.niqe.niqe = real_niqe
        second = load_statistics(str(SHARED / "fixtures" / "fid_stats" / "second_stats.npz"))
        started = time.perf_counter()
        frechet_distance(*second, *statistics)
        report["frechet_seconds"] = time.perf_counter() - started
    per_face = report["protocols"]["paired"]["seconds_per_face"]
    total_setup = sum(v for k, v in setup.items() if k != "fid_statistics_pth")
    report["celeba_test_estimate_hours"] = (total_setup + CELEBA_TEST_PAIRS * per_face
                                            + report["frechet_seconds"]) / 3600
    report["load_average_after"] = _load()
    print(f"set-up: " + ", ".join(f"{k} {v:.1f} s" for k, v in setup.items()))
    print(f"Fréchet distance (2048-d, full rank, once per evaluation): {report['frechet_seconds']:.1f} s")
    print(f"CelebA-Test (3,000 pairs, paired protocol, every metric): ~{report['celeba_test_estimate_hours']:.1f} h")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after "
          f"{report['load_average_after'][0]:.2f} {report['load_average_after'][1]:.2f} "
          f"{report['load_average_after'][2]:.2f} (2 cores)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2, default=float)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main, sys.argv[1:])
