"""The Paddle executor (device_degradation.py) against the CPU reference and OpenCV's JPEG, on real faces."""
import dataclasses

import cv2
import numpy as np
import paddle
import pytest
from conftest import need_shared

from data_loader.degradations import (DegradationSampler, KernelSpec, DegradationParams, degrade, jpeg_roundtrip,
                                      keyed_rngs)
from data_loader.device_degradation import DeviceDegradation, jpeg_compress, quantization_tables
from utils.config import DegradationConfig
from utils.image_io import list_images, read_image


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(1.0 / mse))


def load_faces(size, count):
    # The shared CelebA-HQ faces (1024² JPEGs resized here): the JPEG agreement bounds below were measured on
    # them. The repo's examples are already 256² JPEGs, which a second JPEG pass treats differently.
    files = list_images(str(need_shared("data", "celeba_hq")))[:count]
    return np.stack([cv2.resize(read_image(f), (size, size), interpolation=cv2.INTER_AREA) for f in files]
                    ).astype(np.float32) / 255.0


def nchw(images):
    return paddle.to_tensor(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def nhwc(tensor):
    return tensor.numpy().transpose(0, 2, 3, 1)


def test_quantization_tables_follow_libjpeg_scaling():
    luma50, chroma50 = quantization_tables(50)
    assert luma50[0, 0] == 16 and chroma50[0, 0] == 17
    luma90, _ = quantization_tables(90)   # scale 20%: (16*20 + 50) // 100 = 3
    assert luma90[0, 0] == 3
    luma10, _ = quantization_tables(10)   # scale 500%, clamped to 255 (baseline)
    assert luma10[0, 0] == 80 and luma10.max() == 255
    assert quantization_tables(100)[0].max() == 1


def test_paddle_jpeg_matches_opencv_on_faces():
    faces = load_faces(256, 3)
    x = nchw(faces)
    for q in (30, 60, 90):
        ours = nhwc(jpeg_compress(x, q))
        for i, face in enumerate(faces):
            ref = jpeg_roundtrip(face, q)
            agree, d_ours, d_cv2 = psnr(ours[i], ref), psnr(ours[i], face), psnr(ref, face)
            print(f"q{q} face{i}: PSNR(ours, cv2) {agree:.2f} dB; distortion ours {d_ours:.3f} dB, "
                  f"cv2 {d_cv2:.3f} dB")
            assert agree >= 33.0
            assert abs(d_ours - d_cv2) <= 0.5
            # JPEG outputs sit on the 8-bit grid like a decoded file.
            assert np.allclose(ours[i] * 255, np.round(ours[i] * 255), atol=1e-3)


def test_paddle_jpeg_edges_on_odd_sizes():
    """Sizes that are not multiples of the 16x16 MCU: libjpeg's edge padding is reproduced."""
    face = load_faces(128, 1)[0]
    for h, w in ((72, 100), (66, 99), (65, 112)):
        crop = np.ascontiguousarray(face[:h, :w])
        ours = nhwc(jpeg_compress(nchw(crop[None]), 30))[0]
        ref = jpeg_roundtrip(crop, 30)
        assert ours.shape == ref.shape
        assert psnr(ours, ref) >= 40.0
        # The partial blocks at the bottom and right are as close as the interior (with libjpeg's
        # padding done wrong they were 3-4x further off).
        diff = np.abs(ours - ref) * 255
        interior = diff[:-8, :-8].max()
        assert diff[-8:].max() <= interior + 2 and diff[:, -8:].max() <= interior + 2, (h, w)


def _params(sampler, size, count, stream):
    return [sampler.sample((size, size), *keyed_rngs(stream, i)) for i in range(count)]


def test_executors_agree_without_noise():
    """Same parameters, noise off: the two executors differ only by float/DCT rounding."""
    faces = load_faces(96, 8)
    sampler = DegradationSampler(DegradationConfig(gray_prob=0.5))
    params = [dataclasses.replace(p, noise_sigma=None, noise=None) for p in _params(sampler, 96, 8, 21)]
    lq_dev, hq_dev = DeviceDegradation(sampler)(nchw(faces) * 2 - 1, params)
    lq_dev, hq_dev = (nhwc(lq_dev) + 1) / 2, (nhwc(hq_dev) + 1) / 2
    assert {p.flip for p in params} == {True, False} and {p.gray for p in params} == {True, False}
    for i, p in enumerate(params):
        lq, hq = degrade(faces[i], p)
        np.testing.assert_allclose(hq_dev[i], hq, rtol=0, atol=1e-5)
        assert psnr(lq_dev[i], lq) >= 40.0, (i, p)


def test_executors_statistically_equal():
    """200 draws of the shared sampler on the same faces, each executor with its own noise."""
    size, count, batch = 64, 200, 25
    faces = load_faces(size, 8)
    sampler = DegradationSampler(DegradationConfig())
    params = _params(sampler, size, count, 22)
    device = DeviceDegradation(sampler)
    paddle.seed(5)
    cpu_psnr, dev_psnr = [], []
    for start in range(0, count, batch):
        chunk = params[start:start + batch]
        hq = np.stack([faces[(start + j) % len(faces)] for j in range(len(chunk))])
        lq_dev, hq_dev = device(nchw(hq) * 2 - 1, chunk)
        lq_dev, hq_dev = (nhwc(lq_dev) + 1) / 2, (nhwc(hq_dev) + 1) / 2
        for j, p in enumerate(chunk):
            lq, hq_cpu = degrade(hq[j], p)
            cpu_psnr.append(psnr(lq, hq_cpu))
            dev_psnr.append(psnr(lq_dev[j], hq_dev[j]))
    cpu_mean, dev_mean = np.mean(cpu_psnr), np.mean(dev_psnr)
    print(f"mean PSNR(LQ, HQ) over {count} draws: CPU {cpu_mean:.3f} dB, device {dev_mean:.3f} dB")
    assert abs(cpu_mean - dev_mean) <= 0.5
    # Paired per draw too: the same parameters give nearly the same damage.
    assert np.percentile(np.abs(np.subtract(cpu_psnr, dev_psnr)), 90) < 0.5


def _noise_only(sigma, size):
    return DegradationParams(flip=False, gray=False, kernel=KernelSpec("iso", 0.1, 0.1, 0.0), scale=1.0,
                             noise_sigma=sigma, noise_gray=False, jpeg_quality=None)


@pytest.mark.parametrize("sigma", [2.0, 5.0, 10.0, 20.0])
def test_noise_sigma_is_the_drawn_one(sigma):
    """Flat 100.3/255 image, identity blur and scale, no JPEG: LQ = round(flat + σ·n); the measured σ,
    less the rounding's 1/12 variance, is within 5% of the drawn σ for both executors."""
    size = 96
    flat = np.full((size, size, 3), 100.3 / 255.0, np.float32)
    params = _noise_only(sigma, size)
    params.noise = np.random.default_rng(int(sigma)).standard_normal((size, size, 3), dtype=np.float32)
    lq_cpu, _ = degrade(flat, params)
    paddle.seed(int(sigma))
    lq_dev, _ = DeviceDegradation(DegradationSampler(DegradationConfig(jpeg_range=[])))(
        nchw(flat[None]) * 2 - 1, [params])
    lq_dev = (nhwc(lq_dev)[0] + 1) / 2
    for name, lq in (("cpu", lq_cpu), ("device", lq_dev)):
        residual = lq.astype(np.float64) * 255.0 - 100.3
        measured = np.sqrt(max(residual.var() - 1.0 / 12.0, 0.0))
        print(f"{name}: drawn σ {sigma}, measured {measured:.3f}")
        assert abs(measured - sigma) <= 0.05 * sigma
        assert abs(residual.mean()) < 0.1 * sigma + 0.5


def test_device_executor_own_draws_are_seeded_and_sized():
    faces = load_faces(64, 4)
    x = nchw(faces) * 2 - 1
    outputs = []
    for _ in range(2):
        paddle.seed(3)
        lq, hq = DeviceDegradation(DegradationConfig(), seed=17)(x)
        outputs.append((lq.numpy(), hq.numpy()))
        assert lq.shape == x.shape and hq.shape == x.shape and lq.dtype == paddle.float32
        assert lq.stop_gradient and -1.0 <= float(lq.min()) and float(lq.max()) <= 1.0
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    paddle.seed(3)
    other, _ = DeviceDegradation(DegradationConfig(), seed=18)(x)
    assert not np.array_equal(other.numpy(), outputs[0][0])


def test_a_step_is_degraded_as_a_function_of_seed_and_step_alone():
    """What makes a resumed run exact: seed_step(k) gives the batch of step k whatever came before."""
    x = paddle.to_tensor(np.random.default_rng(0).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32))
    fresh = DeviceDegradation(DegradationConfig(), seed=1)
    fresh.seed_step(5)
    expected = fresh(x)[0].numpy()
    used = DeviceDegradation(DegradationConfig(), seed=1)
    for step in range(3):  # a run that did other steps first
        used.seed_step(step)
        used(x)
    used.seed_step(5)
    np.testing.assert_array_equal(used(x)[0].numpy(), expected)
    used.seed_step(6)
    assert not np.array_equal(used(x)[0].numpy(), expected)
