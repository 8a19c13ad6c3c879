"""Speed and memory of GPEN in Paddle on this machine: one table, one JSON.

    python tools/benchmark.py                        # inference + training sections (about 10 minutes on 2 cores)
    python tools/benchmark.py --sections inference --threads 2 --json output/benchmark.json
    python tools/benchmark.py --sections data fid faces   # the data pipeline, FID features, whole photos

Every run first times the reference convolution of the targets (a shared CPU's speed drifts: compare
today's figure with the 155 ms measured when the targets were set). Sections (each runs in a fresh
process, so its peak memory is its own):
* inference: the generator at batch 1 for GPEN-256 (mul 1, narrow 0.5) and GPEN-512 (mul 2, narrow 1):
  dygraph, the Paddle Inference predictor with and without oneDNN, and the predictor's throughput at
  batch 8 (256). The authors' PyTorch eager model on the same CPU: 387 ms (256) and 5.5 s (512).
* training: one iteration of the recipe at 256 (batch 2) and 512 (batch 2), split into its phases
  (D step, R1 step, G step = G+D forward/backward, path-length step, EMA), samples/s and peak memory.
  The authors' code here (256): plain iteration 9.97 s, R1 step 4.62 s, path-length step 5.30 s, 3.3 GB.
* data / fid / faces: tools/benchmark_data.py, tools/benchmark_fid.py, tools/benchmark_faces.py.
Weights are random: speed does not depend on the values.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = (256, 512)


def official_model(size):
    """The ModelConfig of configs/gpen_<size>.yaml (the authors' GPEN-BFR-<size>)."""
    from utils.config import load_config
    return load_config(os.path.join(HERE, "..", "configs", f"gpen_{size}.yaml")).model


def _median_seconds(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def _peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def inference_case(size, threads, repeats):
    """Runs in its own process: latency of one configuration."""
    import numpy as np
    import paddle

    from deploy.predictor import Predictor
    from model.loading import build_generator

    model_cfg = official_model(size)
    paddle.seed(0)
    generator = build_generator(model_cfg)
    generator.eval()
    x1 = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    result = {"size": size, "channel_multiplier": model_cfg.channel_multiplier, "narrow": model_cfg.narrow,
              "threads": threads}

    with paddle.no_grad():
        tensor = paddle.to_tensor(x1)
        result["dygraph_ms"] = 1000 * _median_seconds(lambda: generator(tensor), max(1, repeats // 2))
    for mkldnn in (True, False):
        predictor = Predictor.from_layer(generator, [3, size, size], output_index=0, threads=threads, mkldnn=mkldnn)
        out = predictor(x1)
        with paddle.no_grad():
            gap = float(np.abs(out - generator(paddle.to_tensor(x1))[0].numpy()).max())
        key = "predictor_onednn" if mkldnn else "predictor_plain"
        result[f"{key}_ms"] = 1000 * _median_seconds(lambda: predictor(x1), repeats)
        result[f"{key}_max_abs_diff_vs_dygraph"] = gap
        if mkldnn and size == 256:
            x8 = np.repeat(x1, 8, axis=0)
            seconds = _median_seconds(lambda: predictor(x8), max(1, repeats // 2))
            result["predictor_onednn_batch8_images_per_s"] = 8 / seconds
            result["predictor_onednn_batch1_images_per_s"] = 1000 / result["predictor_onednn_ms"]
    result["peak_rss_gb"] = _peak_rss_gb()
    return result


def training_case(size, batch, threads, repeats):
    """Runs in its own process: phase times of the training iteration."""
    import numpy as np
    import paddle

    from model.loading import build_discriminator, build_generator
    from trainer.recipe import TrainStep, accumulate, to_floats
    from utils.config import load_config

    cfg = load_config(os.path.join(HERE, "..", "configs", f"gpen_{size}.yaml"),
                      [f"train.batch_size={batch}", "train.w_id=0"])
    paddle.seed(0)
    g, d, g_ema = build_generator(cfg.model), build_discriminator(cfg.model), build_generator(cfg.model)
    accumulate(g_ema, g, 0.0)
    step = TrainStep(cfg, g, d, g_ema)
    rng = np.random.default_rng(0)
    lq = paddle.to_tensor(rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32))
    hq = paddle.to_tensor(rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32))
    phases = {}
    # i = 1: plain iteration (warm-up), then iterations with both regularizers (i % 16 == 0) and plain ones.
    schedule = [1] + [16 * (k + 1) for k in range(repeats)] + [2 * k + 3 for k in range(repeats)]
    for i in schedule:
        to_floats(step(i, lq, hq))
        if i != 1:
            for name, seconds in step.phase_seconds.items():
                phases.setdefault(name, []).append(seconds)
    median = {name: sorted(v)[len(v) // 2] for name, v in phases.items()}
    plain = median["d"] + median["g"] + median["ema"]
    return {"size": size, "batch": batch, "threads": threads, "d_step_s": median["d"], "r1_step_s": median["r1"],
            "g_step_s": median["g"], "path_length_step_s": median["path"], "ema_s": median["ema"],
            "plain_iteration_s": plain, "samples_per_s_plain": batch / plain,
            # The recipe's average iteration: R1 every 16, path length every 4.
            "mean_iteration_s": plain + median["r1"] / 16 + median["path"] / 4,
            "peak_rss_gb": _peak_rss_gb()}


def machine_case(threads, repeats):
    """Runs in its own process: the issue's reference convolution (256->256, 3x3, 64x64, batch 2).

    Shared CPUs change speed over time; this figure, next to the one taken when the targets were set
    (Paddle 155 ms without MKL_DEBUG_CPU_TYPE, PyTorch 53 ms), says how fast the machine is today.
    """
    import paddle
    import paddle.nn.functional as F

    x, w = paddle.randn([2, 256, 64, 64]), paddle.randn([256, 256, 3, 3])
    seconds = _median_seconds(lambda: F.conv2d(x, w, padding=1).numpy(), 3 * repeats)
    return {"reference_conv_ms": 1000 * seconds, "mkl_debug_cpu_type": os.environ.get("MKL_DEBUG_CPU_TYPE", "")}


def run_case(kind, args, threads, repeats, env=None):
    """Run one case in a fresh process (own threads, own peak memory) and return its JSON."""
    command = [sys.executable, os.path.abspath(__file__), "--_case", kind, "--threads", str(threads),
               "--repeats", str(repeats)] + [str(a) for a in args]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_tool(script, extra):
    out = subprocess.run([sys.executable, os.path.join(HERE, script)] + extra, text=True)
    return out.returncode


def print_machine(rows):
    with_flag, without = (r["reference_conv_ms"] for r in rows)
    print(f"Machine check, conv2d 256->256 3x3 at 64x64, batch 2: {with_flag:.0f} ms (MKL_DEBUG_CPU_TYPE=5, as "
          f"every entry point sets it), {without:.0f} ms without; when the targets were measured: 155 ms "
          f"without, PyTorch 53 ms")


def print_inference(rows):
    print("\nGenerator inference, batch 1 (ms; PyTorch eager here: 387 ms at 256, 5500 ms at 512)")
    print(f"{'model':10s} {'dygraph':>9s} {'predictor':>10s} {'+oneDNN':>9s} {'|diff|':>9s} {'peak GB':>8s}")
    for r in rows:
        print(f"GPEN-{r['size']:<5d} {r['dygraph_ms']:9.0f} {r['predictor_plain_ms']:10.0f} "
              f"{r['predictor_onednn_ms']:9.0f} {r['predictor_onednn_max_abs_diff_vs_dygraph']:9.1e} "
              f"{r['peak_rss_gb']:8.2f}")
        if "predictor_onednn_batch8_images_per_s" in r:
            print(f"  oneDNN predictor throughput: {r['predictor_onednn_batch1_images_per_s']:.2f} images/s at "
                  f"batch 1, {r['predictor_onednn_batch8_images_per_s']:.2f} images/s at batch 8")


def print_training(rows):
    print("\nTraining iteration phases (s; authors' code at 256: plain 9.97, R1 4.62, path length 5.30, 3.3 GB)")
    print(f"{'model':10s} {'D':>6s} {'G':>6s} {'plain':>7s} {'R1':>6s} {'path':>6s} {'mean':>6s} {'img/s':>6s} "
          f"{'peak GB':>8s}")
    for r in rows:
        print(f"GPEN-{r['size']:<5d} {r['d_step_s']:6.2f} {r['g_step_s']:6.2f} {r['plain_iteration_s']:7.2f} "
              f"{r['r1_step_s']:6.2f} {r['path_length_step_s']:6.2f} {r['mean_iteration_s']:6.2f} "
              f"{r['samples_per_s_plain']:6.2f} {r['peak_rss_gb']:8.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sections", nargs="+", default=["inference", "training"],
                        choices=["inference", "training", "data", "fid", "faces"])
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), choices=SIZES)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median reported)")
    parser.add_argument("--json", default="output/benchmark.json", help="write the figures here")
    parser.add_argument("--_case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("case_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from utils.runtime import prepare_cpu
    prepare_cpu(args.threads)
    if args._case == "machine":
        print(json.dumps(machine_case(args.threads, args.repeats)))
        return 0
    if args._case == "inference":
        print(json.dumps(inference_case(int(args.case_args[0]), args.threads, args.repeats)))
        return 0
    if args._case == "training":
        print(json.dumps(training_case(int(args.case_args[0]), int(args.case_args[1]), args.threads,
                                       args.repeats)))
        return 0

    report = {"threads": args.threads, "cpu": _cpu_name(), "paddle": _paddle_version()}
    # An empty MKL_DEBUG_CPU_TYPE leaves MKL's default kernels, as the targets' reference was measured.
    report["machine"] = [run_case("machine", [], args.threads, args.repeats, env=dict(os.environ, MKL_DEBUG_CPU_TYPE=v))
                         for v in ("5", "")]
    print_machine(report["machine"])
    if "inference" in args.sections:
        report["inference"] = [run_case("inference", [size], args.threads, args.repeats) for size in args.sizes]
        print_inference(report["inference"])
    if "training" in args.sections:
        report["training"] = [run_case("training", [size, 2], args.threads, 1 if size >= 512 else 2)
                              for size in args.sizes]
        print_training(report["training"])
    folder = os.path.dirname(os.path.abspath(args.json))
    for section, script in (("data", "benchmark_data.py"), ("fid", "benchmark_fid.py"), ("faces", "benchmark_faces.py")):
        if section in args.sections:
            target = os.path.join(folder, f"benchmark_{section}.json")
            flag = "--out" if section == "fid" else "--json"
            report[section] = {"json": target, "status": run_tool(script, ["--threads", str(args.threads), flag, target])}
    os.makedirs(folder, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {args.json}")
    return 0


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _paddle_version():
    import paddle
    return paddle.__version__


if __name__ == "__main__":
    sys.exit(main())
