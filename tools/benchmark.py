"""Speed, memory, FLOPs and op counts of GPEN in Paddle on this machine, beside the authors' PyTorch code.

    python tools/benchmark.py                                  # inference + training, 256 and 512
    python tools/benchmark.py --sizes 256 512 1024 --rounds 2 \\
        --against-authors /path/to/GPEN --authors-python /path/to/torch-venv/bin/python
    python tools/benchmark.py --sections blurs                 # dense band vs tap convolutions, per side
    python tools/benchmark.py --sections convs --against-authors /path/to/GPEN --authors-python ...
    python tools/benchmark.py --sections data fid faces        # data pipeline, FID features, whole photos

Every run first times the issues' reference convolution (256->256 3x3 at 64x64, batch 2): a shared CPU's
speed drifts from day to day, so only figures of one run compare. Each case runs in a fresh process, so
that its peak memory is its own; with --against-authors every case runs the authors' side and ours
alternately (authors, ours, authors, ours, ... for --rounds rounds) and the median of the rounds is
reported with the ratio ours / authors.

Architectures: GPEN-256 = mul 1, narrow 0.5 (the authors' GPEN-BFR-256); 512 and 1024 = mul 2, narrow 1
(configs/gpen_<size>.yaml). Weights are random (speed does not depend on them), no ID loss.
* inference: the generator at batch 1 and 2: dygraph (eager) and our exported oneDNN predictor (the CPU
  path of predict.py / test.py) against the authors' eager forward under torch.no_grad().
* training: one iteration of the recipe (batch 2; 1 at 1024) split into its phases — D step, R1 step,
  G step, path-length step, EMA; plain iteration = D + G + EMA — against the same phases of the authors'
  train() (tools/benchmark_authors.py), with each process's peak memory.
* counts (ours): FLOPs per phase, counted from the shapes of every convolution and matmul of one
  forward pass of G and of D, blurs apart (with what the dense band would cost there); a phase's FLOPs
  use the usual multipliers (backward = 2 x forward; a gradient of a gradient = 2 x the graph it
  differentiates). Op count per iteration: Paddle kernel calls (forward and backward) of a plain
  iteration and of one with R1 and path length, counted by Paddle's profiler on a narrow copy of the
  architecture (same layers, fewer channels: the count does not depend on the width). On a GPU, small
  sizes are bound by these launches.
* profile (ours): the ops the time goes to (Paddle's profiler, op events summed by name), in the
  generator's dygraph forward and in one training iteration with R1 and path length.
* blurs: the separable [1,3,3,1] blur at sides 16..1024 as two banded matmuls and as two one-channel
  tap convolutions: forward, forward + backward, and forward + double backward (as in R1 / path length).
  The crossover sets model/layers.py's DENSE_BLUR_MAX_SIDE.
* convs: one 3x3 convolution at each of GPEN-256's resolutions (its channels there, batch 1): Paddle's
  conv2d forward and forward + backward, and the two halves of its CPU kernel alone, the im2col copy
  (F.unfold; also timed in a one-thread process: it does not use the second core) and the GEMM on its
  columns; with --against-authors, PyTorch's conv2d (oneDNN) on the same shapes. What bounds dygraph.
* data / fid / faces: tools/benchmark_data.py, tools/benchmark_fid.py, tools/benchmark_faces.py.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = (256, 512, 1024)
TRAIN_BATCH = {256: 2, 512: 2, 1024: 1}   # 1024 at batch 1: what a 24 GB machine is asked to fit
TRAIN_REPEATS = {256: 2, 512: 1, 1024: 1}  # timed iterations of each kind per process
BLUR_CASES = ((16, 512), (32, 512), (64, 512), (128, 256), (256, 128), (512, 64), (1024, 32))  # side, channels
CONV_CASES = ((32, 256), (64, 128), (128, 64), (256, 32))  # side, channels of GPEN-256's 3x3 convolutions


def official_config(size, overrides=()):
    from utils.config import load_config
    return load_config(os.path.join(HERE, "..", "configs", f"gpen_{size}.yaml"), list(overrides))


def _median_seconds(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


# ---- cases: each runs in its own process and prints one JSON line -----------------------------------

def machine_case(threads, repeats):
    """The issues' reference convolution (256->256, 3x3, 64x64, batch 2): how fast the machine is today."""
    import paddle
    import paddle.nn.functional as F

    x, w = paddle.randn([2, 256, 64, 64]), paddle.randn([256, 256, 3, 3])
    seconds = _median_seconds(lambda: F.conv2d(x, w, padding=1).numpy(), 3 * repeats)
    return {"reference_conv_ms": 1000 * seconds}


def inference_case(size, batch, threads, repeats):
    """Our generator: dygraph and the oneDNN predictor."""
    import numpy as np
    import paddle

    from deploy.predictor import Predictor
    from model.loading import build_generator

    paddle.seed(0)
    generator = build_generator(official_config(size).model)
    generator.eval()
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
    tensor = paddle.to_tensor(x)
    with paddle.no_grad():
        dygraph_ms = 1000 * _median_seconds(lambda: generator(tensor)[0].numpy(), repeats)
        reference = generator(tensor)[0].numpy()
    predictor = Predictor.from_layer(generator, [3, size, size], output_index=0, threads=threads, mkldnn=True)
    out = predictor(x)
    return {"dygraph_ms": dygraph_ms, "predictor_ms": 1000 * _median_seconds(lambda: predictor(x), repeats),
            "predictor_max_abs_diff": float(np.abs(out - reference).max()), "peak_rss_gb": _peak_rss_gb()}


def _training_setup(size, batch):
    """The official architecture of `size` for a batch (no ID loss), seeded: (cfg, G, D, G_ema (a copy of G),
    degraded, sharp), the images uniform in [-1, 1]."""
    import numpy as np
    import paddle

    from model.loading import build_discriminator, build_generator
    from trainer.recipe import accumulate

    cfg = official_config(size, [f"train.batch_size={batch}", "train.w_id=0"])
    paddle.seed(0)
    g, d, g_ema = build_generator(cfg.model), build_discriminator(cfg.model), build_generator(cfg.model)
    accumulate(g_ema, g, 0.0)
    rng = np.random.default_rng(0)
    lq = paddle.to_tensor(rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32))
    hq = paddle.to_tensor(rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32))
    return cfg, g, d, g_ema, lq, hq


def training_case(size, batch, threads, repeats):
    """Phase times of our training iteration (trainer.recipe.TrainStep)."""
    from trainer.recipe import TrainStep

    cfg, g, d, g_ema, lq, hq = _training_setup(size, batch)
    step = TrainStep(cfg, g, d, g_ema)
    runs = {}
    # i = 1: a plain iteration (warm-up); then iterations with both regularizers (i % 16 == 0) and plain ones.
    schedule = [1] + [16 * (k + 1) for k in range(repeats)] + [2 * k + 3 for k in range(repeats)]
    for i in schedule:
        values = step(i, lq, hq)
        float(values["d"])  # the iteration is done (a no-op on the CPU, a wait on a GPU)
        if i != 1:
            for name, seconds in step.phase_seconds.items():
                runs.setdefault(name, []).append(seconds)
    m = {name: statistics.median(v) for name, v in runs.items()}
    return {"d_step_s": m["d"], "r1_step_s": m["r1"], "g_step_s": m["g"], "path_length_step_s": m["path"],
            "ema_s": m["ema"], "plain_iteration_s": m["d"] + m["g"] + m["ema"], "peak_rss_gb": _peak_rss_gb()}


class FlopCounter:
    """FLOPs of every conv2d and matmul run while active, blurs apart (with what a dense band costs)."""

    def __init__(self, network):
        import paddle
        import paddle.nn.functional as F

        from model.layers import Blur

        self.paddle, self.F = paddle, F
        self.totals = {"conv_matmul": 0, "blur": 0, "blur_dense": 0, "blur_taps": 0}
        self.in_blur = 0
        self.hooks = []
        for layer in network.sublayers():
            if isinstance(layer, Blur):
                self.hooks.append(layer.register_forward_pre_hook(self._enter))
                self.hooks.append(layer.register_forward_post_hook(self._leave))

    def _enter(self, layer, inputs):
        self.in_blur += 1

    def _leave(self, layer, inputs, output):
        self.in_blur -= 1
        n, c, h, w = inputs[0].shape
        ho, wo = output.shape[2], output.shape[3]
        taps = len(layer.kernel_1d)
        self.totals["blur_dense"] += 2 * n * c * (ho * h * w + ho * wo * w)
        self.totals["blur_taps"] += 2 * taps * n * c * (ho * w + ho * wo)

    def _add(self, flops):
        self.totals["blur" if self.in_blur else "conv_matmul"] += flops

    def _add_conv(self, weight, out):
        per_output = 2 * weight.shape[1] * weight.shape[2] * weight.shape[3]  # weight: (out, in/groups, kh, kw)
        self._add(per_output * out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3])

    def __enter__(self):
        from model import conv

        F, paddle = self.F, self.paddle
        self.conv2d, self.matmul, self.onednn = F.conv2d, paddle.matmul, conv._run_onednn

        def conv2d(x, weight, *args, **kwargs):  # Paddle's (blurs; model/conv.py off the CPU or without oneDNN)
            out = self.conv2d(x, weight, *args, **kwargs)
            self._add_conv(weight, out)
            return out

        def onednn(x, weight, *args):  # model/conv.py's oneDNN op
            out = self.onednn(x, weight, *args)
            self._add_conv(weight, out)
            return out

        def matmul(x, y, transpose_x=False, transpose_y=False, name=None):
            out = self.matmul(x, y, transpose_x, transpose_y, name)
            inner = x.shape[-2] if transpose_x else x.shape[-1]
            count = 1
            for s in out.shape:
                count *= s
            self._add(2 * inner * count)
            return out

        F.conv2d, paddle.matmul, conv._run_onednn = conv2d, matmul, onednn
        return self

    def __exit__(self, *exc):
        from model import conv

        self.F.conv2d, self.paddle.matmul, conv._run_onednn = self.conv2d, self.matmul, self.onednn
        for hook in self.hooks:
            hook.remove()
        return False


def _trace_events(fn):
    """The complete ("X") events of Paddle's profiler over one call of fn()."""
    import glob
    import tempfile

    import paddle.profiler as profiler

    with tempfile.TemporaryDirectory() as folder:
        prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU],
                                 on_trace_ready=profiler.export_chrome_tracing(folder))
        prof.start()
        fn()
        prof.step()
        prof.stop()
        (trace,) = glob.glob(os.path.join(folder, "*.json"))
        with open(trace) as f:
            return [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]


def count_kernel_calls(fn):
    """Paddle kernel calls (forward and backward) made by fn(), from the profiler's events."""
    import re

    # Every kernel call has one "<op> infer_meta" event.
    return sum(1 for e in _trace_events(fn) if re.match(r"\S+ infer_meta\[", e.get("name", "")))


def top_ops(fn, count=12):
    """The ops fn() spends its time in: [(op, calls, seconds, share of the op time)], most time first.
    An op is a profiler event of category Operator ("conv2d dygraph", "conv2d_grad grad_node", ...)."""
    seconds, calls = {}, {}
    for e in _trace_events(fn):
        if e.get("cat") == "Operator":
            name = e["name"].split("[")[0].strip()
            seconds[name] = seconds.get(name, 0.0) + e["dur"] / 1e6
            calls[name] = calls.get(name, 0) + 1
    total = sum(seconds.values()) or 1.0
    ranked = sorted(seconds, key=seconds.get, reverse=True)[:count]
    return [(name, calls[name], seconds[name], seconds[name] / total) for name in ranked]


def profile_case(size, batch, threads, repeats):
    """Where the time goes (Paddle's profiler): the generator's dygraph forward, and one training iteration
    with R1 and path length (TrainStep at i = 16), at full width."""
    import paddle

    from trainer.recipe import TrainStep

    cfg, g, d, g_ema, lq, hq = _training_setup(size, batch)
    g.eval()
    with paddle.no_grad():
        g(lq)[0].numpy()  # warm-up: cached constants
        forward = top_ops(lambda: g(lq)[0].numpy())
    g.train()
    step = TrainStep(cfg, g, d, g_ema)
    step(1, lq, hq)
    iteration = top_ops(lambda: float(step(16, lq, hq)["d"]))
    return {"dygraph_forward": forward, "iteration_with_r1_and_path_length": iteration}


def counts_case(size, batch, threads, repeats):
    """FLOPs per phase (full width) and kernel calls per iteration (a narrow copy of the architecture)."""
    import dataclasses

    import paddle

    from model.loading import build_discriminator, build_generator
    from trainer.recipe import TrainStep, accumulate

    cfg = official_config(size, [f"train.batch_size={batch}", "train.w_id=0"])
    paddle.seed(0)
    g, d = build_generator(cfg.model), build_discriminator(cfg.model)
    x = paddle.randn([1, 3, size, size])
    flops = {}
    with paddle.no_grad():
        for name, net in (("g", g), ("d", d)):
            with FlopCounter(net) as counter:
                net(x)
            flops[name] = {k: v * batch for k, v in counter.totals.items()}
    del g, d
    total = {name: f["conv_matmul"] + f["blur"] for name, f in flops.items()}
    G, D = total["g"], total["d"]
    phases = {"d_step": G + 6 * D, "r1_step": 6 * D, "g_step": 3 * G + 2 * D, "path_length_step": 6 * G}

    narrow = dataclasses.replace(cfg.model, narrow=cfg.model.narrow / 16, style_dim=32)
    small = dataclasses.replace(cfg, model=narrow)
    g, d, g_ema = build_generator(narrow), build_discriminator(narrow), build_generator(narrow)
    accumulate(g_ema, g, 0.0)
    step = TrainStep(small, g, d, g_ema)
    lq, hq = paddle.randn([batch, 3, size, size]), paddle.randn([batch, 3, size, size])
    step(1, lq, hq)  # warm-up: cached constants
    ops = {"plain_iteration": count_kernel_calls(lambda: step(3, lq, hq)),
           "iteration_with_r1_and_path_length": count_kernel_calls(lambda: step(16, lq, hq))}
    return {"forward_gflops": {n: {k: v / 1e9 for k, v in f.items()} for n, f in flops.items()},
            "phase_gflops": {k: v / 1e9 for k, v in phases.items()}, "ops_per_iteration": ops}


def blurs_case(side, channels, threads, repeats):
    """Seconds of the separable blur as dense bands and as tap convolutions, batch 2, pads (2, 2)."""
    import paddle

    from model.layers import _separable_factor, band_matrix_blur, tap_convolutions

    kernel = tuple(_separable_factor([1, 3, 3, 1], 1))
    forms = {"band": lambda x: band_matrix_blur(x, kernel, (2, 2)), "taps": lambda x: tap_convolutions(x, kernel, (2, 2))}
    x0 = paddle.randn([2, channels, side, side])
    weight = paddle.randn([2, channels, side + 1, side + 1])
    result = {"side": side, "channels": channels}
    for name, blur in forms.items():
        x = x0.detach()
        x.stop_gradient = False

        def backward():
            (blur(x) * weight).sum().backward()

        def double():
            (grad,) = paddle.grad((blur(x) ** 2).sum(), x, create_graph=True)
            (grad * grad).sum().backward()

        with paddle.no_grad():
            result[f"{name}_forward_ms"] = 1000 * _median_seconds(lambda: blur(x0), repeats)
        result[f"{name}_backward_ms"] = 1000 * _median_seconds(backward, repeats)
        result[f"{name}_double_ms"] = 1000 * _median_seconds(double, repeats)
    return result


def convs_case(side, channels, threads, repeats):
    """Milliseconds of one 3x3 convolution (channels -> channels, side², batch 1) and of its im2col and GEMM."""
    import paddle
    import paddle.nn.functional as F

    x0, w = paddle.randn([1, channels, side, side]), paddle.randn([channels, channels, 3, 3])
    columns = F.unfold(x0, 3, paddings=1)[0]            # (9·channels, side²)
    flat_w = w.reshape([channels, 9 * channels])
    x = x0.detach()
    x.stop_gradient = False

    def backward(convolve):
        convolve(x, w, padding=1).sum().backward()

    with paddle.no_grad():
        result = {"side": side, "channels": channels, "threads": threads,
                  "conv_forward_ms": 1000 * _median_seconds(lambda: F.conv2d(x0, w, padding=1), repeats),
                  "im2col_ms": 1000 * _median_seconds(lambda: F.unfold(x0, 3, paddings=1), repeats),
                  "gemm_ms": 1000 * _median_seconds(lambda: paddle.matmul(flat_w, columns), repeats)}
    result["conv_backward_ms"] = 1000 * _median_seconds(lambda: backward(F.conv2d), repeats)
    from model import conv
    if conv.mode() != "paddle" and conv.onednn_available():  # what GPEN's layers run (model/conv.py)
        with paddle.no_grad():
            result["onednn_forward_ms"] = 1000 * _median_seconds(lambda: conv.conv2d(x0, w, padding=1), repeats)
        result["onednn_backward_ms"] = 1000 * _median_seconds(lambda: backward(conv.conv2d), repeats)
    return result


CASES = {"machine": machine_case, "inference": inference_case, "training": training_case, "counts": counts_case,
         "blurs": blurs_case, "convs": convs_case, "profile": profile_case}


# ---- running cases ----------------------------------------------------------------------------------

# Our processes run as the entry scripts do (utils.runtime.set_malloc): glibc keeps freed blocks of up to
# 2 GB for reuse (the trainer hands the pages back after each phase). The reason: Paddle's CPU allocator
# frees every tensor back to malloc, and glibc otherwise maps and unmaps each large block afresh,
# page-faulting it in on every allocation (on this VM ~4-6 us per 4 KB page: 37,000 faults for the im2col
# buffer of one 64->32 3x3 conv at 256^2). For comparison: glibc's defaults (GPEN_MALLOC=system, the
# lower-memory choice), or its defaults with large blocks on transparent huge pages (a tunable read at
# start-up: an environment variable of the child process).
MALLOC = {"scripts": {}, "keep": {"GPEN_MALLOC": "keep"}, "system": {"GPEN_MALLOC": "system"},
          "hugepages": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "GPEN_MALLOC": "system"}}


def run_ours(kind, args, threads, repeats, malloc="scripts"):
    """Run one of our cases in a fresh process and return its JSON."""
    command = [sys.executable, os.path.abspath(__file__), "--_case", kind, "--threads", str(threads),
               "--repeats", str(repeats)] + [str(a) for a in args]
    return _run(command, f"{kind} {args}", env=dict(os.environ, **MALLOC[malloc]))


def run_authors(options, kind, size, batch, threads, repeats):
    """Run the authors' side of a case (tools/benchmark_authors.py under their PyTorch) and return its JSON.
    For kind "convs", size and batch are the side and the channels of the convolution."""
    case = {"training": "train", "inference": "infer", "convs": "conv"}[kind]
    shape = ["--side", str(size), "--channels", str(batch)] if kind == "convs" else ["--size", str(size),
                                                                                      "--batch", str(batch)]
    command = [options.authors_python, os.path.join(HERE, "benchmark_authors.py"), "--authors",
               options.against_authors, "--case", case] + shape + ["--threads", str(threads), "--repeats", str(repeats)]
    return _run(command, f"authors' {kind} {size}")


def _run(command, what, env=None):
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(runs):
    """The median over rounds of every number in a list of case results."""
    merged = {}
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[key] = statistics.median(r[key] for r in runs)
        else:
            merged[key] = value
    merged["rounds"] = len(runs)
    return merged


def compare(options, kind, size, batch, threads, repeats):
    """(authors, ours) of one case: alternately for options.rounds rounds, medians. A side that fails
    (e.g. out of memory) is reported as missing, and the run goes on."""
    authors, ours = [], []
    for _ in range(options.rounds):
        if options.against_authors:
            authors.append(_try(run_authors, options, kind, size, batch, threads, repeats))
        ours.append(_try(run_ours, kind, [size, batch], threads, repeats, options.malloc))
    authors, ours = [r for r in authors if r], [r for r in ours if r]
    return (median_of(authors) if authors else None), (median_of(ours) if ours else None)


def _try(run, *args):
    try:
        return run(*args)
    except RuntimeError as err:
        print(f"  (failed: {str(err).splitlines()[0]} ... {str(err).strip().splitlines()[-1]})", flush=True)
        return None


# ---- printing ---------------------------------------------------------------------------------------

def _row(label, theirs, ours, unit, scale=1.0):
    t = f"{theirs * scale:10.2f}" if theirs is not None else f"{'-':>10s}"
    o = f"{ours * scale:10.2f}" if ours is not None else f"{'-':>10s}"
    ratio = f"{ours / theirs:7.2f}" if theirs and ours is not None else f"{'':7s}"
    print(f"  {label:44s} {t} {o} {ratio}  {unit}", flush=True)


def print_size(size, result):
    arch = "mul 1, narrow 0.5" if size == 256 else "mul 2, narrow 1"
    print(f"\nGPEN-{size} ({arch})                                  authors       ours   ratio")
    train = result.get("training")
    if train:
        a, o = (side or {} for side in train)
        batch = TRAIN_BATCH[size]
        for label, key in (("plain training iteration (D + G + EMA)", "plain_iteration_s"), ("  D step", "d_step_s"),
                           ("  G step", "g_step_s"), ("R1 step", "r1_step_s"), ("path-length step", "path_length_step_s")):
            _row(f"{label}, batch {batch}", a.get(key), o.get(key), "s")
        _row("peak memory, training", a.get("peak_rss_gb"), o.get("peak_rss_gb"), "GB")
    for batch in (1, 2):
        infer = result.get(f"inference_{batch}")
        if infer:
            a, o = (side or {} for side in infer)
            _row(f"generator dygraph (eager), batch {batch}", a.get("eager_ms"), o.get("dygraph_ms"), "ms")
            _row(f"generator oneDNN predictor, batch {batch}", a.get("eager_ms"), o.get("predictor_ms"), "ms")
            _row(f"  peak memory, inference batch {batch}", a.get("peak_rss_gb"), o.get("peak_rss_gb"), "GB")
    counts = result.get("counts")
    if counts:  # FLOPs and kernel calls: ours only
        f, p = counts["forward_gflops"], counts["phase_gflops"]
        print(f"  FLOPs (ours, batch {TRAIN_BATCH[size]}): forward G {f['g']['conv_matmul'] + f['g']['blur']:.1f} GFLOP "
              f"(blurs {f['g']['blur']:.1f}; as dense bands {f['g']['blur_dense']:.1f}, as taps "
              f"{f['g']['blur_taps']:.2f}), D {f['d']['conv_matmul'] + f['d']['blur']:.1f} (blurs {f['d']['blur']:.1f}; "
              f"dense {f['d']['blur_dense']:.1f}, taps {f['d']['blur_taps']:.2f})")
        print("  FLOPs per phase: " + ", ".join(f"{k} {v:.0f} GFLOP" for k, v in p.items()))
        print("  kernel calls per iteration: " + ", ".join(f"{k} {v}" for k, v in counts["ops_per_iteration"].items()))
    profile = result.get("profile")
    if profile:  # ours only
        for part, label in (("dygraph_forward", f"dygraph forward, batch {TRAIN_BATCH[size]}"),
                            ("iteration_with_r1_and_path_length", "iteration with R1 and path length")):
            print(f"  top ops, {label}: " + ", ".join(
                f"{name} {seconds:.2f} s ({100 * share:.0f} %, {calls} calls)" for name, calls, seconds, share in profile[part]))


def print_convs(rows):
    print("\n3x3 convolution, batch 1, ms: PyTorch (oneDNN) forward | Paddle's conv2d forward, forward + backward; "
          "its im2col (2 threads / 1 thread) and GEMM | model/conv.py (oneDNN op) forward, forward + backward")
    for theirs, ours, one_thread in rows:
        t = f"{theirs['conv_forward_ms']:7.1f}" if theirs else f"{'-':>7s}"
        ratio = f"{ours['conv_forward_ms'] / theirs['conv_forward_ms']:5.1f}x" if theirs else ""
        line = (f"  {ours['side']:4d}px x {ours['channels']:3d} ch   torch {t}   paddle {ours['conv_forward_ms']:7.1f} "
                f"{ratio:6s} {ours['conv_backward_ms']:7.1f}   im2col {ours['im2col_ms']:6.1f} / "
                f"{one_thread['im2col_ms']:6.1f}   GEMM {ours['gemm_ms']:6.1f}")
        if "onednn_forward_ms" in ours:
            ratio = f"{ours['onednn_forward_ms'] / theirs['conv_forward_ms']:5.1f}x" if theirs else ""
            line += f"   oneDNN op {ours['onednn_forward_ms']:6.1f} {ratio:6s} {ours['onednn_backward_ms']:7.1f}"
        print(line)


def print_blurs(rows):
    print("\nSeparable [1,3,3,1] blur, batch 2, ms: dense band | tap convolutions (forward / +backward / +double backward)")
    for r in rows:
        print(f"  {r['side']:5d}px x {r['channels']:3d} ch   band {r['band_forward_ms']:8.1f} {r['band_backward_ms']:8.1f} "
              f"{r['band_double_ms']:8.1f}   taps {r['taps_forward_ms']:8.1f} {r['taps_backward_ms']:8.1f} "
              f"{r['taps_double_ms']:8.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sections", nargs="+", default=["inference", "training", "counts"],
                        choices=["inference", "training", "counts", "profile", "blurs", "convs", "data", "fid",
                                 "faces"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512], choices=SIZES)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (both sides)")
    parser.add_argument("--repeats", type=int, default=3, help="timed inference calls per process (median)")
    parser.add_argument("--rounds", type=int, default=1, help="processes per case and side, alternating (median)")
    parser.add_argument("--against-authors", default="", metavar="PATH",
                        help="checkout of the authors' repository: time their code in the same run")
    parser.add_argument("--authors-python", default="", metavar="PYTHON",
                        help="a Python with PyTorch for --against-authors (default: this one)")
    parser.add_argument("--malloc", choices=sorted(MALLOC), default="scripts",
                        help="our processes' malloc: as the entry scripts set it, freed blocks kept, glibc's "
                             "defaults, or its defaults on transparent huge pages (see MALLOC)")
    parser.add_argument("--json", default="output/benchmark.json", help="write the figures here")
    parser.add_argument("--_case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("case_args", nargs="*", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from utils.runtime import prepare_cpu
    prepare_cpu(args.threads)  # as every entry script (GPEN_MALLOC, set by --malloc, overrides)
    if args._case:
        print(json.dumps(CASES[args._case](*args.case_args, args.threads, args.repeats)))
        return 0
    if args.against_authors:
        args.authors_python = args.authors_python or sys.executable
        probe = subprocess.run([args.authors_python, "-c", "import torch"], capture_output=True)
        if probe.returncode != 0:
            print(f"error: {args.authors_python} cannot import torch; give a Python with PyTorch as --authors-python",
                  file=sys.stderr)
            return 2

    cpu, simd = _cpu()
    report = {"threads": args.threads, "cpu": cpu, "simd": simd, "paddle": _paddle_version(), "load": os.getloadavg(),
              "authors": args.against_authors or None, "malloc": args.malloc}
    report["machine"] = run_ours("machine", [], args.threads, args.repeats, args.malloc)
    print(f"Machine check ({report['cpu']}, {report['simd']}), conv2d 256->256 3x3 at 64x64, batch 2: "
          f"{report['machine']['reference_conv_ms']:.0f} ms; "
          f"load average {report['load'][0]:.1f} on {os.cpu_count()} cores; our processes: malloc {args.malloc}")
    report["sizes"] = {}
    for size in args.sizes if {"training", "inference", "counts", "profile"} & set(args.sections) else []:
        result = report["sizes"].setdefault(str(size), {})
        if "training" in args.sections:
            result["training"] = compare(args, "training", size, TRAIN_BATCH[size], args.threads, TRAIN_REPEATS[size])
        if "inference" in args.sections:
            for batch in (1, 2):
                result[f"inference_{batch}"] = compare(args, "inference", size, batch, args.threads, args.repeats)
        if "counts" in args.sections:
            result["counts"] = _try(run_ours, "counts", [size, TRAIN_BATCH[size]], args.threads, 1, args.malloc)
        if "profile" in args.sections:
            result["profile"] = _try(run_ours, "profile", [size, TRAIN_BATCH[size]], args.threads, 1, args.malloc)
        print_size(size, result)
        _write(args.json, report)  # what is measured so far
    if "convs" in args.sections:
        report["convs"] = []
        for side, channels in CONV_CASES:
            theirs, ours = compare(args, "convs", side, channels, args.threads, args.repeats)
            one_thread = run_ours("convs", [side, channels], 1, args.repeats, args.malloc)
            report["convs"].append((theirs, ours, one_thread))
        print_convs(report["convs"])
    if "blurs" in args.sections:
        report["blurs"] = [run_ours("blurs", [side, channels], args.threads, args.repeats, args.malloc)
                           for side, channels in BLUR_CASES]
        print_blurs(report["blurs"])
    folder = os.path.dirname(os.path.abspath(args.json))
    for section, script in (("data", "benchmark_data.py"), ("fid", "benchmark_fid.py"), ("faces", "benchmark_faces.py")):
        if section in args.sections:
            target = os.path.join(folder, f"benchmark_{section}.json")
            flag = "--out" if section == "fid" else "--json"
            status = subprocess.run([sys.executable, os.path.join(HERE, script), "--threads", str(args.threads),
                                     flag, target]).returncode
            report[section] = {"json": target, "status": status}
    report["load_after"] = os.getloadavg()
    _write(args.json, report)
    print(f"\nload average at the end {report['load_after'][0]:.1f}; wrote {args.json}")
    return 0


def _write(path, report):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)


def _cpu():
    """(model name, widest vector extension) from /proc/cpuinfo: the speed of both sides' convolutions
    depends on the extension."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = fields.get("flags", "").split()
    simd = next((name for name in ("avx512f", "avx2", "avx", "sse4_2") if name in flags), "unknown")
    return fields.get("model name", "unknown"), simd


def _paddle_version():
    import paddle
    return paddle.__version__


if __name__ == "__main__":
    sys.exit(main())
