"""Throughput and peak memory of HQ loading + degradation (issue #3's targets).

    python tools/benchmark_data.py --data ../shared/data/ffhq --json benchmark_data.json

Every case runs in a fresh process, whose memory (peak RSS of the main process, peak PSS summed over
it and its loader workers, sampled from /proc) is its own: the decode of the HQ files; the authors'
per-image pipeline (their OpenCV operations: INTER_AREA resize, full 41x41 filter2D, ...) and our CPU
executor (the dataset's item: resize + degradation + CHW), both on already decoded images in one
process; the whole loader (decode + resize + degradation) with 1 and 2 workers; the device-mode loader
(decode + resize only); the device executor on batches of HQ tensors (on this machine's CPU). Its GPU
throughput is estimated from its FLOPs and memory traffic (counted per stage) on an assumed GPU
(--gpu-tflops, --gpu-bandwidth) against its per-batch host work: the numpy parameter draws (measured)
and one dispatch per Paddle op (ops counted with Paddle's profiler, --gpu-op-us each).

Timings on a shared machine are noisy: compare cases of the same run, and rerun on a quiet machine.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

from utils.runtime import prepare_cpu

CASES = ("decode", "cpu_pipelines", "loader_cpu_w1", "loader_cpu_w2", "loader_device_w2", "device_executor")
PER_SIZE = CASES[1:]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/ffhq", help="folder of HQ faces (FFHQ 1024² PNGs)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--images", type=int, default=128, help="images per timed run")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="Paddle CPU threads (device executor)")
    parser.add_argument("--cv2-threads", type=int, default=-1,
                        help="OpenCV threads in the single-process cases (-1: OpenCV's default)")
    parser.add_argument("--gpu-tflops", type=float, default=14.0, help="assumed GPU FP32 peak (V100: ~14)")
    parser.add_argument("--gpu-bandwidth", type=float, default=900.0, help="assumed GPU memory GB/s (V100: 900)")
    parser.add_argument("--gpu-op-us", type=float, default=30.0,
                        help="assumed host cost of dispatching one dygraph op to a GPU, microseconds")
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # internal: run one case
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------------
# One case, in its own process.

def _proc_kb(pid, path, field):
    try:
        with open(f"/proc/{pid}/{path}", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid):
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        return []
    return found + [d for c in found for d in _descendants(c)]


def run_child(cmd):
    """Run `cmd`, sampling its memory: (stdout, stderr, returncode, peak main RSS MB, peak total PSS MB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_rss = peak_pss = 0
    out, err = "", ""
    while True:
        try:
            out, err = proc.communicate(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            pids = [proc.pid] + _descendants(proc.pid)
            peak_rss = max(peak_rss, _proc_kb(proc.pid, "status", "VmRSS"))
            peak_pss = max(peak_pss, sum(_proc_kb(p, "smaps_rollup", "Pss") for p in pids))
    return out, err, proc.returncode, round(peak_rss / 1024, 1), round(peak_pss / 1024, 1)


def _decoded(args, count):
    from utils.image_io import list_images, read_image

    files = list_images(args.data)[:count]
    return files, [read_image(f) for f in files]


def _time_items(get_item, count):
    get_item(0)  # warm-up (imports, caches)
    start = time.perf_counter()
    cpu = time.process_time()
    for i in range(count):
        get_item(i)
    return time.perf_counter() - start, time.process_time() - cpu


def run_case(args):
    if args.case not in ("decode", "cpu_pipelines"):  # the others import paddle (~270 MB); set it up first
        prepare_cpu(args.threads)
    import cv2
    import numpy as np

    if args.cv2_threads >= 0:
        cv2.setNumThreads(args.cv2_threads)
    size, count = args.size, args.images
    result = {"case": args.case, "size": size}

    if args.case == "decode":
        from utils.image_io import list_images, read_image

        files = list_images(args.data)
        wall, cpu = _time_items(lambda i: read_image(files[i % len(files)]), count)
        result.update(images=count, source=f"{len(files)} files, e.g. {os.path.basename(files[0])}")

    elif args.case == "cpu_pipelines":
        # Two pipelines on the same decoded images, alternating image by image so that both see the
        # same machine load: the authors' per-image operations (INTER_AREA, filter2D with the full 41x41
        # kernel, ...; numpy's RandomState) and our CPU executor as FaceDataset runs it (keyed draws,
        # fast blur) minus the decode.
        import random

        from data_loader.degradations import TRAIN_STREAM, DegradationSampler, as_float_image, degrade, keyed_rngs
        from utils.imaging import to_network

        _, images = _decoded(args, 10)
        sampler = DegradationSampler()
        py_rng, np_rng = random.Random(0), np.random.RandomState(0)

        def pipeline(i, fast):
            hq = as_float_image(cv2.resize(images[i % 10], (size, size), interpolation=cv2.INTER_AREA))
            rngs = keyed_rngs(TRAIN_STREAM, 0, 0, i) if fast else (py_rng, np_rng)
            lq, hq = degrade(hq, sampler.sample(hq.shape[:2], *rngs), sampler.kernel_size, fast=fast)
            return to_network(lq), to_network(hq)

        spent = {False: [0.0, 0.0], True: [0.0, 0.0]}
        pipeline(0, True), pipeline(0, False)
        for i in range(count):
            for fast in (i % 2 == 0, i % 2 == 1):
                start, cpu = time.perf_counter(), time.process_time()
                pipeline(i, fast)
                spent[fast][0] += time.perf_counter() - start
                spent[fast][1] += time.process_time() - cpu
        rows = []
        for name, fast in (("authors_ops", False), ("cpu_executor", True)):
            wall, cpu = spent[fast]
            rows.append(dict(result, case=name, images=count, seconds=round(wall, 3), cpu_seconds=round(cpu, 3),
                             images_per_s=round(count / wall, 1), ms_per_image=round(1000 * wall / count, 2)))
        print(json.dumps(rows))
        return

    elif args.case.startswith("loader"):
        from data_loader.dataset import FaceDataset, build_loader

        class Repeated(FaceDataset):  # the folder's files over and over, `count` items
            def __len__(self):
                return count

            def __getitem__(self, key):
                epoch, index = key
                return super().__getitem__((epoch, index % len(self.files)))

        mode = "device" if "device" in args.case else "cpu"
        workers = int(args.case[-1])
        loader = build_loader(Repeated(args.data, size, "area", mode), args.batch, num_workers=workers,
                              shuffle=False, rank=0, world_size=1)
        # Steady state: the arrival times of the last two thirds of the batches (the first ones come
        # from worker start-up and the prefetch queue).
        cpu = time.process_time()
        arrivals = [time.perf_counter() for _ in loader]
        cpu = time.process_time() - cpu
        first = len(arrivals) // 3
        wall = arrivals[-1] - arrivals[first]
        result.update(images=(len(arrivals) - 1 - first) * args.batch, workers=workers, mode=mode)

    else:  # device executor
        import paddle
        import paddle.profiler as profiler

        from data_loader.device_degradation import DeviceDegradation

        _, images = _decoded(args, args.batch)
        hq = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
        hq = paddle.to_tensor(hq.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
        degrader = DeviceDegradation(seed=0)
        degrader(hq)
        rounds = max(2, count // args.batch)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            lq, _ = degrader(hq)
        float(lq.mean())  # waits for the device
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        # The host-side numpy work of a batch (parameter draws, kernels) and the LQ canvas sizes.
        canvases, numpy_start = [], time.perf_counter()
        for _ in range(rounds):
            params = degrader.sample(args.batch, (size, size))
            [p.kernel.build(degrader.sampler.kernel_size) for p in params]
            canvases.append(max(-(-p.lq_size(size, size)[0] // 16) * 16 for p in params))
        numpy_ms = 1000 * (time.perf_counter() - numpy_start) / rounds
        # Paddle ops dispatched per batch (each one a kernel launch on a GPU).
        # on_trace_ready: keep the trace in memory (the default writes ./profiler_log/*.json).
        prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda p: None)
        prof.start()
        degrader(hq)
        prof.stop()
        ops = []

        def walk(node):
            if node.type == profiler.TracerEventType.Operator:
                ops.append(node.name)
            for child in node.children_node:
                walk(child)

        for root in prof.profiler_result.get_data().values():
            walk(root)
        result.update(images=rounds * args.batch, batch=args.batch, threads=args.threads,
                      mean_canvas=float(np.mean(canvases)), host_numpy_ms_per_batch=round(numpy_ms, 2),
                      ops_per_batch=len(ops))

    result.update(seconds=round(wall, 3), cpu_seconds=round(cpu, 3),
                  images_per_s=round(result["images"] / wall, 1),
                  ms_per_image=round(1000 * wall / result["images"], 2))
    print(json.dumps(result))


# ----------------------------------------------------------------------------------------------------
# The device executor's cost model (per batch, float32).

def device_cost(size, batch, canvas, kernel_size=41):
    """(FLOPs, bytes moved) of one DeviceDegradation call, counted stage by stage."""
    b, c, hw = batch, 3, size * size
    r = kernel_size // 2
    fft_side = size + 2 * r
    n_fft = fft_side * fft_side
    lq = canvas * canvas
    stages = {
        # (flops, passes over float32 tensors of the given element count)
        "flip/gray/scale": (10 * b * c * hw, 8 * b * c * hw),
        "blur (FFT)": (7 * b * 2.5 * n_fft * math.log2(n_fft) + 6 * b * c * n_fft / 2,
                       (7 * 4 + 3) * b * n_fft + 2 * b * c * n_fft),
        "downscale": (14 * b * c * lq, 3 * b * c * lq + 2 * b * lq),
        "noise": (25 * b * c * lq, 10 * b * c * lq),
        "jpeg": (180 * b * lq, 60 * b * lq),
        "resize back": (14 * b * c * hw, 3 * b * c * hw + 2 * b * hw),
        "outputs": (2 * b * c * hw, 4 * b * c * hw),
    }
    flops = sum(f for f, _ in stages.values())
    bytes_moved = 4 * sum(p for _, p in stages.values())
    return flops, bytes_moved


# ----------------------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    if args.case:
        args.size = args.size or args.sizes[0]
        run_case(args)
        return 0
    if not os.path.isdir(args.data):
        from utils.errors import UserError

        raise UserError(f"image folder not found: {args.data} (pass --data)")

    def child(case, size):
        cmd = [sys.executable, os.path.abspath(__file__), "--case", case, "--size", str(size), "--data", args.data,
               "--images", str(args.images), "--batch", str(args.batch), "--threads", str(args.threads),
               "--cv2-threads", str(args.cv2_threads)]
        out, err, code, peak_rss, peak_pss = run_child(cmd)
        lines = [line for line in out.splitlines() if line.startswith(("{", "["))]
        if code or not lines:
            raise RuntimeError(f"case {case} at {size} failed:\n{err[-2000:]}")
        rows = json.loads(lines[-1])
        rows = rows if isinstance(rows, list) else [rows]
        for row in rows:
            row.update(peak_rss_mb=peak_rss, peak_pss_total_mb=peak_pss)
            print(f"  {row['case']} {size}: {row['images_per_s']} images/s", file=sys.stderr)
        return rows

    results = child("decode", 1024)
    for size in args.sizes:
        for case in PER_SIZE:
            results += child(case, size)

    estimates = []
    for size in args.sizes:
        run = next(r for r in results if r["case"] == "device_executor" and r["size"] == size)
        flops, bytes_moved = device_cost(size, args.batch, run["mean_canvas"])
        device_s = flops / (args.gpu_tflops * 1e12) + bytes_moved / (args.gpu_bandwidth * 1e9)
        host_s = run["host_numpy_ms_per_batch"] / 1e3 + run["ops_per_batch"] * args.gpu_op_us / 1e6
        estimates.append({"size": size, "batch": args.batch, "gflops_per_batch": round(flops / 1e9, 2),
                          "mbytes_per_batch": round(bytes_moved / 1e6, 1),
                          "device_ms": round(device_s * 1e3, 3), "host_ms": round(host_s * 1e3, 2),
                          "ops_per_batch": run["ops_per_batch"],
                          "estimated_images_per_s": round(args.batch / max(device_s, host_s)),
                          "bound_by": "device memory traffic" if device_s > host_s else
                          "host (parameter draws + op dispatch)"})

    print(f"{'case':<18}{'size':>6}{'img/s':>9}{'ms/img':>9}{'cpu s':>8}{'peak RSS MB':>13}{'total PSS MB':>14}")
    for r in results:
        print(f"{r['case']:<18}{r['size']:>6}{r['images_per_s']:>9}{r['ms_per_image']:>9}{r['cpu_seconds']:>8}"
              f"{r['peak_rss_mb']:>13}{r['peak_pss_total_mb']:>14}")
    print(f"\nDevice executor on an assumed GPU ({args.gpu_tflops} TFLOP/s, {args.gpu_bandwidth} GB/s, "
          f"{args.gpu_op_us} us per op dispatch):")
    for e in estimates:
        print(f"  {e['size']}: {e['gflops_per_batch']} GFLOP, {e['mbytes_per_batch']} MB moved per batch of "
              f"{e['batch']} -> {e['device_ms']} ms on the device; host {e['host_ms']} ms "
              f"({e['ops_per_batch']} ops) -> ~{e['estimated_images_per_s']} images/s, bound by {e['bound_by']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"results": results, "gpu_estimates": estimates, "settings": {
                k: v for k, v in vars(args).items() if k not in ("case", "size", "json")}}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main)
