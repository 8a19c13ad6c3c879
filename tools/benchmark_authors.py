"""The authors' side of `tools/benchmark.py --against-authors`: their PyTorch GPEN, timed phase by phase.

Run by a PyTorch interpreter (benchmark.py's `--authors-python`), never imported by the project. It
imports the authors' `face_model/gpen_model.py` and the loss functions of their `train_simple.py` from
the checkout given as `--authors PATH`, at run time (nothing of theirs is copied here), and prints one
JSON line:

    TORCH_PYTHON tools/benchmark_authors.py --authors /work/upstream/GPEN --case train --size 256 --batch 2
    TORCH_PYTHON tools/benchmark_authors.py --authors /work/upstream/GPEN --case infer --size 512 --batch 1

* train: the phases of their `train()` step for step (GPEN_SPEC §5), with their functions
  (`requires_grad`, `d_logistic_loss`, `d_r1_loss`, `g_nonsaturating_loss` with `SmoothL1Loss()` and a
  zero identity loss — the ID loss is off on our side too —, `g_path_regularize`, `accumulate`) and
  their optimizer settings. Phases: D step, R1 step, G step, path-length step, EMA; the plain iteration
  is D + G + EMA, as on our side. Iteration numbers as ours: a plain warm-up, then iterations that run
  both regularizers and plain ones; the median of each phase is reported.
* infer: `FullGenerator(x)` under `torch.no_grad()`, eager, the median of `--repeats` calls.
* conv: PyTorch's own 3x3 `F.conv2d` (channels -> channels at side², batch 1, no grad), the convolution their
  layers call, without their code.

Their custom CUDA ops are never built: `face_model/op` compiles them only when CUDA is available and
otherwise runs its pure-PyTorch paths (`upfirdn2d_native`, `F.leaky_relu`), which is what runs here.
`train_simple.py` imports, at its top, modules that none of these phases calls (its data set, ArcFace
and LPIPS wrappers, tqdm, torchvision's image utilities); they are replaced by empty stand-in modules
(STAND_INS) so that the file imports on a bare PyTorch install.
"""
import argparse
import json
import os
import resource
import sys
import time
import types

# Modules train_simple.py imports but the timed phases never call (module -> names it imports from it).
STAND_INS = {
    "tqdm": ["tqdm"],
    "torchvision": ["transforms", "utils"],
    "training.data_loader.dataset_face": ["FaceDataset"],
    "training.loss.id_loss": ["IDLoss"],
    "training.lpips": [],
}

# GPEN-256 is the authors' GPEN-BFR-256 (mul 1, narrow 0.5); 512 and 1024 use mul 2, narrow 1.
ARCHITECTURES = {256: (1, 0.5), 512: (2, 1.0), 1024: (2, 1.0)}


def import_authors(path):
    """(gpen_model, train_simple) imported from the authors' checkout at `path`. The stand-ins are in
    sys.modules only while train_simple.py is imported (PyTorch's own import-time checks dislike them)."""
    # The authors' own layout: train_simple.py imports face_model/ modules by bare name (__init_paths).
    for folder in (path, os.path.join(path, "face_model")):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    import gpen_model

    saved = {name: sys.modules.get(name) for name in STAND_INS}
    for name, attributes in STAND_INS.items():
        module = types.ModuleType(name)
        module.__doc__ = "stand-in: imported by train_simple.py, never called by the benchmark"
        for attribute in attributes:
            setattr(module, attribute, types.ModuleType(f"{name}.{attribute}"))
        sys.modules[name] = module
    try:
        import train_simple
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return gpen_model, train_simple


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def median_ms(call, repeats):
    """Milliseconds of call(), the median of `repeats` timed calls after one warm-up, without autograd."""
    import torch

    times = []
    with torch.no_grad():
        call()
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return 1000 * median(times)


class Phases:
    """Their training iteration (the body of train_simple.train), one phase at a time."""

    def __init__(self, model, ts, size, batch):
        import torch

        mul, narrow = ARCHITECTURES[size]
        self.torch, self.ts = torch, ts
        torch.manual_seed(0)
        self.g = model.FullGenerator(size, 512, 8, channel_multiplier=mul, narrow=narrow, device="cpu")
        self.d = model.Discriminator(size, channel_multiplier=mul, narrow=narrow, device="cpu")
        self.g_ema = model.FullGenerator(size, 512, 8, channel_multiplier=mul, narrow=narrow, device="cpu")
        self.g_ema.eval()
        ts.accumulate(self.g_ema, self.g, 0)
        # train_simple.py's defaults: lr 0.002, r1 10, path_regularize 2, d_reg_every 16, g_reg_every 4.
        self.r1_weight, self.path_weight, self.d_reg_every, self.g_reg_every = 10.0, 2.0, 16, 4
        g_ratio = self.g_reg_every / (self.g_reg_every + 1)
        d_ratio = self.d_reg_every / (self.d_reg_every + 1)
        self.g_optim = torch.optim.Adam(self.g.parameters(), lr=0.002 * g_ratio, betas=(0 ** g_ratio, 0.99 ** g_ratio))
        self.d_optim = torch.optim.Adam(self.d.parameters(), lr=0.002 * d_ratio, betas=(0 ** d_ratio, 0.99 ** d_ratio))
        zero_id = lambda fake, real, degraded: (torch.zeros(()), None, None)  # noqa: E731 (ID loss off)
        self.losses = [torch.nn.SmoothL1Loss(), zero_id]
        self.accum = 0.5 ** (32 / (10 * 1000))  # their EMA decay
        self.mean_path_length = 0
        generator = torch.Generator().manual_seed(0)
        self.degraded = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1
        self.real = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1

    def iteration(self, i):
        """Iteration i; returns the seconds of each phase that ran."""
        torch, ts, seconds = self.torch, self.ts, {}
        clock = time.perf_counter()
        degraded, real = self.degraded, self.real.clone()

        ts.requires_grad(self.g, False)
        ts.requires_grad(self.d, True)
        fake_img, _ = self.g(degraded)
        fake_pred = self.d(fake_img)
        real_pred = self.d(real)
        d_loss = ts.d_logistic_loss(real_pred, fake_pred)
        self.d.zero_grad()
        d_loss.backward()
        self.d_optim.step()
        clock = self._lap(seconds, "d", clock)

        if i % self.d_reg_every == 0:
            real.requires_grad = True
            real_pred = self.d(real)
            r1_loss = ts.d_r1_loss(real_pred, real)
            self.d.zero_grad()
            (self.r1_weight / 2 * r1_loss * self.d_reg_every + 0 * real_pred[0]).backward()
            self.d_optim.step()
            clock = self._lap(seconds, "r1", clock)

        ts.requires_grad(self.g, True)
        ts.requires_grad(self.d, False)
        fake_img, _ = self.g(degraded)
        fake_pred = self.d(fake_img)
        g_loss = ts.g_nonsaturating_loss(fake_pred, self.losses, fake_img, real, degraded)
        self.g.zero_grad()
        g_loss.backward()
        self.g_optim.step()
        clock = self._lap(seconds, "g", clock)

        if i % self.g_reg_every == 0:
            fake_img, latents = self.g(degraded, return_latents=True)
            path_loss, self.mean_path_length, _ = ts.g_path_regularize(fake_img, latents, self.mean_path_length)
            self.g.zero_grad()
            weighted_path_loss = self.path_weight * self.g_reg_every * path_loss
            weighted_path_loss += 0 * fake_img[0, 0, 0, 0]  # their path_batch_shrink term (default 2)
            weighted_path_loss.backward()
            self.g_optim.step()
            clock = self._lap(seconds, "path", clock)

        ts.accumulate(self.g_ema, self.g, self.accum)
        self._lap(seconds, "ema", clock)
        # Their loop reads every logged loss with .item() once per iteration.
        for value in (d_loss, g_loss):
            value.item()
        return seconds

    @staticmethod
    def _lap(seconds, name, start):
        now = time.perf_counter()
        seconds[name] = now - start
        return now


def train_case(model, ts, size, batch, repeats):
    phases = Phases(model, ts, size, batch)
    runs = {}
    # As on our side: iteration 1 (plain) warms up, then iterations 16k (both regularizers) and odd ones.
    schedule = [1] + [16 * (k + 1) for k in range(repeats)] + [2 * k + 3 for k in range(repeats)]
    for i in schedule:
        seconds = phases.iteration(i)
        if i != 1:
            for name, value in seconds.items():
                runs.setdefault(name, []).append(value)
    m = {name: median(values) for name, values in runs.items()}
    return {"d_step_s": m["d"], "r1_step_s": m["r1"], "g_step_s": m["g"], "path_length_step_s": m["path"],
            "ema_s": m["ema"], "plain_iteration_s": m["d"] + m["g"] + m["ema"]}


def infer_case(model, size, batch, repeats):
    import torch

    mul, narrow = ARCHITECTURES[size]
    torch.manual_seed(0)
    generator = model.FullGenerator(size, 512, 8, channel_multiplier=mul, narrow=narrow, device="cpu").eval()
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return {"eager_ms": median_ms(lambda: generator(x), repeats)}


def conv_case(side, channels, repeats):
    import torch
    import torch.nn.functional as F

    x, w = torch.randn(1, channels, side, side), torch.randn(channels, channels, 3, 3)
    return {"conv_forward_ms": median_ms(lambda: F.conv2d(x, w, padding=1), repeats)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors", required=True, help="checkout of the authors' repository (yangxy/GPEN)")
    parser.add_argument("--case", choices=["train", "infer", "conv"], required=True)
    parser.add_argument("--size", type=int, choices=sorted(ARCHITECTURES), help="train, infer: the architecture")
    parser.add_argument("--side", type=int, default=256, help="conv: the map's side")
    parser.add_argument("--channels", type=int, default=32, help="conv: input and output channels")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if args.case != "conv" and args.size is None:
        parser.error(f"--case {args.case} needs --size")
    if not os.path.isfile(os.path.join(args.authors, "face_model", "gpen_model.py")):
        print(f"error: {args.authors} is not a checkout of the authors' GPEN (no face_model/gpen_model.py)",
              file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    if args.case == "conv":
        result = conv_case(args.side, args.channels, args.repeats)
    elif args.case == "train":
        result = train_case(*import_authors(os.path.abspath(args.authors)), args.size, args.batch, args.repeats)
    else:
        result = infer_case(import_authors(os.path.abspath(args.authors))[0], args.size, args.batch, args.repeats)
    result.update(side="authors", case=args.case, size=args.size, batch=args.batch, threads=args.threads,
                  torch=torch.__version__, peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
