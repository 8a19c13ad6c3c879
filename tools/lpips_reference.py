"""Reference LPIPS distances from the real `lpips` package, for tests/test_metric_lpips.py.

NOT part of CI: running it needs torch, torchvision and lpips 0.1.4, which the project does not
depend on. The test holds the printed values as constants; this script is how they were made:

    python -m venv /tmp/lpips_venv
    /tmp/lpips_venv/bin/pip install torch numpy scipy tqdm "torchvision<0.29"   # torchvision matching torch
    /tmp/lpips_venv/bin/pip install --no-deps lpips==0.1.4
    PYTHONPATH=. /tmp/lpips_venv/bin/python tools/lpips_reference.py

What it does:
1. `random_weights()` (numpy only, seeded; the test calls the same function) makes an AlexNet
   `features` state dict with He-scaled weights and lpips heads with non-negative weights (as lpips
   trains them), in the real files' key layouts.
2. The AlexNet weights are written as torchvision's `alexnet-owt-7be5be79.pth` (a full torchvision
   AlexNet state dict, classifier included) into a private torch hub cache, so that lpips's own
   `tv.alexnet(pretrained=True)` loads them through torchvision's normal path without a download;
   the heads are written as a .pth and given to `lpips.LPIPS(..., model_path=...)`, lpips's own way
   of loading heads. The loaded parameters are then compared with ours (lpips loads heads with
   strict=False, which would otherwise hide a key mismatch).
3. `reference_cases()` (numpy only, seeded; the test calls it too) gives the inputs: float pairs in
   [-1, 1] at 64 px (identical, unrelated, slightly perturbed), at 256 px and at 68 x 100 px, and
   uint8 pairs at 64 px that go through lpips's `im2tensor`. lpips computes the distances (net='alex', version='0.1', eval
   mode, normalize=False) and the script prints them as a Python literal for the test.

If torchvision's compiled operators do not load (PyPI's torchvision wheel is a CUDA build, which a
CPU-only torch cannot load), its module `_meta_registrations`, which only registers fake-tensor
kernels for those detection operators (nms, roi_align, ...), is replaced by an empty module; every
other part of torchvision and lpips is the real code. The script says when it does this.
"""
import collections
import os
import sys
import tempfile

import numpy as np

SEED = 20180111  # LPIPS's arXiv submission date; any fixed value would do
# torchvision AlexNet `features`: index -> (in channels, out channels, kernel size).
ALEXNET_CONVS = {0: (3, 64, 11), 3: (64, 192, 5), 6: (192, 384, 3), 8: (384, 256, 3), 10: (256, 256, 3)}
HEAD_CHANNELS = (64, 192, 384, 256, 256)
BIAS_STD = 0.05
HEAD_SCALE = 0.1


def random_weights(seed=SEED):
    """(backbone, heads): float32 state dicts in the key layouts of torchvision's AlexNet `features`
    and of lpips's weights/v0.1/alex.pth. Conv weights ~ N(0, 2 / fan_in) (He) keep the ReLU
    activations at a steady scale through the five layers; heads are |N(0, 1)| * 0.1."""
    rng = np.random.default_rng(seed)
    backbone = collections.OrderedDict()
    for index, (cin, cout, k) in ALEXNET_CONVS.items():
        std = np.sqrt(2.0 / (cin * k * k))
        backbone[f"features.{index}.weight"] = (rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32)
        backbone[f"features.{index}.bias"] = (rng.standard_normal(cout) * BIAS_STD).astype(np.float32)
    heads = collections.OrderedDict(
        (f"lin{k}.model.1.weight", (np.abs(rng.standard_normal((1, c, 1, 1))) * HEAD_SCALE).astype(np.float32))
        for k, c in enumerate(HEAD_CHANNELS))
    return backbone, heads


def _smooth_noise(rng, n, size, cell=8, grain=0.1):
    """Images (n, 3, size, size) in [-1, 1] with structure: coarse random colours per `cell` block,
    box-smoothed, plus fine noise of std `grain`; float64."""
    coarse = rng.uniform(-0.9, 0.9, (n, 3, size // cell, size // cell))
    image = np.repeat(np.repeat(coarse, cell, axis=2), cell, axis=3)
    box = np.ones(cell + 1) / (cell + 1)
    for axis in (2, 3):
        padded = np.concatenate([np.take(image, [0] * (cell // 2), axis=axis), image,
                                 np.take(image, [-1] * (cell // 2), axis=axis)], axis=axis)
        image = np.apply_along_axis(lambda line: np.convolve(line, box, mode="valid"), axis, padded)
    return np.clip(image + grain * rng.standard_normal(image.shape), -1.0, 1.0)


def reference_cases(seed=SEED + 1):
    """name -> (in0, in1): float32 (N, 3, H, W) in [-1, 1] for the float cases, uint8 (N, H, W, 3)
    RGB for the 'uint8_*' cases (which go through lpips.im2tensor / metric.lpips.lpips_batch)."""
    rng = np.random.default_rng(seed)
    a, b = _smooth_noise(rng, 1, 64), _smooth_noise(rng, 1, 64)
    perturbed = np.clip(a + 0.05 * rng.standard_normal(a.shape), -1.0, 1.0)
    c = _smooth_noise(rng, 1, 256)
    d = np.clip(0.8 * c + 0.2 * _smooth_noise(rng, 1, 256, cell=16), -1.0, 1.0)
    u0 = np.round((_smooth_noise(rng, 2, 64).transpose(0, 2, 3, 1) + 1.0) * 127.5).astype(np.uint8)
    u1 = np.round((_smooth_noise(rng, 2, 64).transpose(0, 2, 3, 1) + 1.0) * 127.5).astype(np.uint8)
    # 68 x 100: not square, and a size where floor and ceil pooling differ (AlexNet pools in floor mode).
    e = _smooth_noise(rng, 1, 100, cell=4)[:, :, 16:84]
    f = np.clip(e[:, :, ::-1] * 0.5 + 0.5 * _smooth_noise(rng, 1, 100, cell=4)[:, :, :68], -1.0, 1.0)
    f32 = np.float32
    return collections.OrderedDict([
        # pairs: (a, a) identical, (a, b) unrelated, (a, a + noise) close
        ("float_64", (np.concatenate([a, a, a]).astype(f32), np.concatenate([a, b, perturbed]).astype(f32))),
        ("float_256", (c.astype(f32), d.astype(f32))),
        ("uint8_64", (u0, u1)),
        ("float_68x100", (e.astype(f32), f.astype(f32))),
    ])


def _import_torchvision():
    try:
        import torchvision
        return torchvision, False
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
    import types
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    import torchvision
    return torchvision, True


def main():
    import torch

    torchvision, stubbed = _import_torchvision()
    import lpips

    torch.manual_seed(0)  # only the unused classifier of the hub file draws from torch's generator
    backbone, heads = random_weights()
    with tempfile.TemporaryDirectory() as tmp:
        torch.hub.set_dir(os.path.join(tmp, "hub"))
        os.makedirs(os.path.join(tmp, "hub", "checkpoints"))
        alexnet = torchvision.models.alexnet(weights=None)
        alexnet.features.load_state_dict({k[len("features."):]: torch.from_numpy(v) for k, v in backbone.items()})
        torch.save(alexnet.state_dict(), os.path.join(tmp, "hub", "checkpoints", "alexnet-owt-7be5be79.pth"))
        heads_path = os.path.join(tmp, "alex.pth")
        torch.save({k: torch.from_numpy(v) for k, v in heads.items()}, heads_path)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=False, model_path=heads_path,
                            verbose=False)
    model.eval()
    state = model.state_dict()
    for key, value in heads.items():
        assert torch.equal(state[key], torch.from_numpy(value)), key
    loaded = {f"features.{name.split('.', 1)[1]}": value for name, value in model.net.state_dict().items()}
    assert sorted(loaded) == sorted(backbone)
    for key, value in backbone.items():
        assert torch.equal(loaded[key], torch.from_numpy(value)), key

    results = collections.OrderedDict()
    with torch.no_grad():
        for name, (in0, in1) in reference_cases().items():
            if name.startswith("uint8"):
                t0 = torch.cat([lpips.im2tensor(image) for image in in0])
                t1 = torch.cat([lpips.im2tensor(image) for image in in1])
            else:
                t0, t1 = torch.from_numpy(in0), torch.from_numpy(in1)
            results[name] = model(t0, t1).reshape(-1).numpy()
    from importlib.metadata import version
    print(f"# torch {torch.__version__}, torchvision {torchvision.__version__}, lpips {version('lpips')}, "
          f"numpy {np.__version__}"
          + ("; torchvision._meta_registrations stubbed (its compiled ops do not load)" if stubbed else ""))
    print("REFERENCE = {")
    for name, values in results.items():
        print(f"    {name!r}: [{', '.join(f'{v:.9g}' for v in values)}],")
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
