"""Speed of FID feature extraction: our Inception port in dygraph and through a Paddle Inference
predictor with oneDNN, on CPU, against pytorch-fid's figure on the same machine.

    python tools/benchmark_fid.py [--weights pt_inception-2015-12-05-6726825d.pth] [--threads 2]
        [--batch 8] [--size 299] [--calls 10] [--processes 3] [--out output/benchmark_fid.json]

Each timed call is one `metric.fid.extract_features` on a batch of uint8 images (conversion,
resize and network included). The two backends are timed in alternating calls so that load from
other processes hits both alike. Then `--processes` fresh processes each build both backends and
compare their features on the same images (the predictor's oneDNN passes are chosen per process,
so one good run proves little): finite, and within the fixture tolerance of dygraph.
Prints a table and writes the figures as JSON.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_WEIGHTS = ROOT.parent / "shared" / "fixtures" / "fid_inception" / "pt_inception_random.pth"
# pytorch-fid 0.3.0, torch 2.13.0+cpu with oneDNN, 2 threads, batch of 8 random 299x299 inputs on this
# 2-core AMD EPYC machine (shared/fixtures/fid_inception/README.md, "Speed to match"): median seconds.
TORCH_SECONDS_PER_BATCH8 = 0.786
# pool3 agreement required between the backends: the fixture README's bound for the network alone.
POOL3_TOLERANCE = 1e-3


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=str(FIXTURE_WEIGHTS) if FIXTURE_WEIGHTS.exists() else "",
                        help="Inception weights (.pth or .pdparams); default: the random-weight test fixture "
                             "(speed does not depend on the values)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--batch", type=int, default=8, help="images per call")
    parser.add_argument("--size", type=int, default=299, help="input side in pixels (299: no resize)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per backend")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per backend")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes for the agreement check")
    parser.add_argument("--out", default="output/benchmark_fid.json", help="JSON report (output/ is git-ignored)")
    parser.add_argument("--child-check", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _images(batch, size, seed=0):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def _summary(seconds, batch):
    import numpy as np

    seconds = np.asarray(seconds)
    median = float(np.median(seconds))
    return {"median_s_per_batch": median, "min_s_per_batch": float(seconds.min()),
            "mean_s_per_batch": float(seconds.mean()), "max_s_per_batch": float(seconds.max()),
            "images_per_s": batch / median, "ms_per_image": 1000.0 * median / batch,
            "speedup_vs_torch": TORCH_SECONDS_PER_BATCH8 / median * (batch / 8)}


def child_check(args):
    """Run in a fresh process: build both backends, compare their features, print one JSON line."""
    import numpy as np

    from deploy.features import inception_features
    from metric.fid import extract_features

    images = _images(4, args.size, seed=1)
    dygraph = extract_features(inception_features(args.weights, backend="dygraph"), images, 4)
    predictor = inception_features(args.weights, backend="predictor", threads=args.threads)
    features = extract_features(predictor, images, 4)
    print(json.dumps({"finite": bool(np.isfinite(features).all()),
                      "max_abs_diff_vs_dygraph": float(np.abs(features - dygraph).max()),
                      "max_abs_pool3": float(np.abs(dygraph).max())}))


def run_children(args):
    results = []
    for _ in range(args.processes):
        proc = subprocess.run([sys.executable, __file__, "--child-check", "--weights", args.weights,
                               "--threads", str(args.threads), "--size", str(args.size)],
                              capture_output=True, text=True, cwd=ROOT)
        line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
        entry = {"returncode": proc.returncode}
        if proc.returncode == 0 and line:
            entry.update(json.loads(line))
        else:
            entry["stderr_tail"] = proc.stderr[-500:]
        results.append(entry)
    return results


def main(argv=None):
    args = parse_args(argv)
    from utils.runtime import prepare_cpu

    prepare_cpu(args.threads)
    from utils.errors import UserError

    if not args.weights:
        raise UserError("no Inception weights given and the test fixture is absent; pass --weights")
    if args.child_check:
        child_check(args)
        return 0

    import numpy as np
    import paddle

    from deploy.features import inception_features
    from metric.fid import extract_features

    paddle.set_device("cpu")
    images = _images(args.batch, args.size)
    setup = {}
    start = time.perf_counter()
    backends = {"dygraph": inception_features(args.weights, backend="dygraph")}
    setup["dygraph"] = time.perf_counter() - start
    start = time.perf_counter()
    backends["predictor_onednn"] = inception_features(args.weights, backend="predictor", threads=args.threads)
    setup["predictor_onednn"] = time.perf_counter() - start

    outputs = {}
    for name, features in backends.items():
        for _ in range(args.warmup):
            outputs[name] = extract_features(features, images, args.batch)
    timings = {name: [] for name in backends}
    for _ in range(args.calls):
        for name, features in backends.items():
            start = time.perf_counter()
            extract_features(features, images, args.batch)
            timings[name].append(time.perf_counter() - start)

    report = {
        "settings": {"threads": args.threads, "batch": args.batch, "size": args.size, "warmup": args.warmup,
                     "calls": args.calls, "weights": os.path.basename(args.weights),
                     "MKL_DEBUG_CPU_TYPE": os.environ.get("MKL_DEBUG_CPU_TYPE", "")},
        "versions": {"paddle": paddle.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0]},
        "torch_reference_s_per_batch8": TORCH_SECONDS_PER_BATCH8,
        "setup_s": setup,
        "results": {name: _summary(t, args.batch) for name, t in timings.items()},
        "same_process_max_abs_diff": float(np.abs(outputs["predictor_onednn"] - outputs["dygraph"]).max()),
    }
    report["fresh_processes"] = run_children(args) if args.processes else []
    agree = [r.get("finite", False) and r.get("max_abs_diff_vs_dygraph", np.inf) <= POOL3_TOLERANCE
             for r in report["fresh_processes"]]
    report["predictor_agrees_in_all_processes"] = all(agree)

    print(f"FID Inception feature extraction, batch {args.batch}, {args.size} px, {args.threads} CPU threads, "
          f"{args.calls} timed calls (load average {report['machine']['load_average_1min']:.1f})")
    print(f"{'backend':<20}{'s/batch (median)':>18}{'min':>8}{'images/s':>10}{'ms/image':>10}{'vs torch':>10}")
    rows = [(name, r) for name, r in report["results"].items()]
    for name, r in rows:
        print(f"{name:<20}{r['median_s_per_batch']:>18.3f}{r['min_s_per_batch']:>8.3f}{r['images_per_s']:>10.2f}"
              f"{r['ms_per_image']:>10.1f}{r['speedup_vs_torch']:>9.2f}x")
    print(f"{'pytorch-fid (torch)':<20}{TORCH_SECONDS_PER_BATCH8:>18.3f}{'':>8}{8 / TORCH_SECONDS_PER_BATCH8:>10.2f}"
          f"{1000 * TORCH_SECONDS_PER_BATCH8 / 8:>10.1f}{1:>9.2f}x")
    print(f"setup: dygraph {setup['dygraph']:.1f} s, predictor (load + export + passes) "
          f"{setup['predictor_onednn']:.1f} s")
    print(f"predictor vs dygraph, same process: max |diff| {report['same_process_max_abs_diff']:.2e}")
    for i, r in enumerate(report["fresh_processes"]):
        if r["returncode"] != 0:
            print(f"fresh process {i}: FAILED with return code {r['returncode']}")
        else:
            print(f"fresh process {i}: finite {r['finite']}, max |diff| vs dygraph {r['max_abs_diff_vs_dygraph']:.2e}")
    folder = os.path.dirname(args.out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return 0 if report["predictor_agrees_in_all_processes"] else 1


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main)
