"""The degradation of `degradations.py` as batched Paddle ops on the training device.

The data loader then only decodes and resizes HQ files; the blur, the rescaling, the noise and a JPEG
codec written in Paddle run on the GPU (or wherever Paddle's current device is), forward only.

Same parameters, same maths as the CPU executor (`degradations.degrade`), batched:

* flip and gray: per-sample masks;
* blur: every sample's kernel applied through real FFTs of the reflect-padded batch (the correlation
  cv2.filter2D computes, with its BORDER_REFLECT_101), one batched transform instead of B convolutions;
* downscale by s_i: each sample is resampled with its own bilinear grid into a shared canvas (the
  largest LQ size, rounded up to 16); pixels right of / below a sample's LQ size repeat its last
  column / row — exactly the padding libjpeg gives a partial 16x16 block — and the coordinates are
  OpenCV's INTER_LINEAR ones ((x + 0.5)·in/out − 0.5, clamped), so the samples match cv2.resize;
* Gaussian noise with per-sample σ, drawn on the device (Paddle's generator, `paddle.seed`);
* 8-bit rounding, then JPEG as libjpeg does it: RGB -> YCbCr, 4:2:0 (2x2 averages with libjpeg's
  alternating rounding bias), 8x8 DCT, the IJG tables scaled by quality, rounding, dequantisation,
  inverse DCT, libjpeg's "fancy" (triangular) chroma upsampling, YCbCr -> RGB, all per sample;
* bilinear resize back to the HQ size from the canvas, per sample.

What differs from OpenCV: float DCTs instead of libjpeg's integer ones (a quantised coefficient can land
one step apart), and the noise realisation. tests/test_data_device.py measures both against the CPU executor.
"""
import random

import numpy as np
import paddle
import paddle.nn.functional as F

from data_loader.degradations import DEVICE_STREAM, DegradationSampler, keyed_rngs

# IJG / JPEG Annex K standard quantisation tables (quality 50), row-major 8x8.
_LUMA_Q50 = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.int64).reshape(8, 8)
_CHROMA_Q50 = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99], np.int64).reshape(8, 8)


def quantization_tables(quality):
    """libjpeg's jpeg_set_quality(quality, force_baseline=TRUE): (luma, chroma) int tables, (8, 8)."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return tuple(np.clip((base * scale + 50) // 100, 1, 255) for base in (_LUMA_Q50, _CHROMA_Q50))


def _dct_matrix():
    """Orthonormal 8-point DCT-II: coefficients = D @ block @ D.T (JPEG's definition)."""
    u = np.arange(8)[:, None]
    x = np.arange(8)[None, :]
    d = 0.5 * np.cos((2 * x + 1) * u * np.pi / 16)
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


_DCT = _dct_matrix()


def _fast_len(n):
    """Smallest 2^a·3^b·5^c >= n (sizes the FFT libraries handle fastest)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _round_up(n, multiple):
    return -(-n // multiple) * multiple


def _clamped_index(valid, length):
    """[B, length] int64: position i, or the last valid position of each sample when i is past it."""
    idx = np.minimum(np.arange(length)[None, :], np.asarray(valid)[:, None] - 1)
    return idx.astype(np.int64)


def _replicate_beyond(x, valid_h, valid_w):
    """Per sample b, overwrite rows >= valid_h[b] / columns >= valid_w[b] of x [B,C,H,W] with the last
    valid row / column (libjpeg's edge extension)."""
    b, c, h, w = x.shape
    iy = _clamped_index(valid_h, h)
    ix = _clamped_index(valid_w, w)
    flat = (iy[:, :, None] * w + ix[:, None, :]).reshape(b, 1, h * w)
    index = paddle.to_tensor(flat).expand([b, c, h * w])
    return paddle.take_along_axis(x.reshape([b, c, h * w]), index, axis=2).reshape([b, c, h, w])


def _resize_grid(src_hw, dst_hw, out_hw, norm_hw):
    """Sampling grid [B, out_h, out_w, 2] for grid_sample(align_corners=False) that reproduces
    cv2.resize(INTER_LINEAR) of each sample's src_hw[b] region to dst_hw[b]; output positions past
    dst_hw[b] repeat the last one. Coordinates are normalised by the input tensor's size norm_hw."""
    grids = []
    for axis in (1, 0):  # x first: grid_sample's last dimension is (x, y)
        src = np.asarray([s[axis] for s in src_hw], np.float64)[:, None]
        dst = np.asarray([d[axis] for d in dst_hw], np.float64)[:, None]
        pos = np.minimum(np.arange(out_hw[axis])[None, :], dst - 1)
        coord = np.clip((pos + 0.5) * (src / dst) - 0.5, 0, src - 1)  # OpenCV's mapping and clamping
        grids.append(((2 * coord + 1) / norm_hw[axis] - 1).astype(np.float32))
    gx = paddle.to_tensor(grids[0])[:, None, :].expand([len(src_hw), out_hw[0], out_hw[1]])
    gy = paddle.to_tensor(grids[1])[:, :, None].expand([len(src_hw), out_hw[0], out_hw[1]])
    return paddle.stack([gx, gy], axis=-1)


def _blocks(x):
    """[B,C,H,W] -> [B,C,H/8,W/8,8,8]."""
    b, c, h, w = x.shape
    return x.reshape([b, c, h // 8, 8, w // 8, 8]).transpose([0, 1, 2, 4, 3, 5])


def _unblocks(x):
    b, c, hb, wb = x.shape[:4]
    return x.transpose([0, 1, 2, 4, 3, 5]).reshape([b, c, hb * 8, wb * 8])


def _interleave(even, odd, axis):
    """Alternate slices of `even` and `odd` along `axis` (2 or 3) of [B,C,H,W] tensors."""
    b, c, h, w = even.shape
    stacked = paddle.stack([even, odd], axis=axis + 1)
    return stacked.reshape([b, c, h * 2, w] if axis == 2 else [b, c, h, w * 2])


def _shift(x, axis, step):
    """x shifted by one along `axis` with the edge repeated: step -1 = previous element, +1 = next."""
    n = x.shape[axis]
    if step < 0:
        return paddle.concat([x.slice([axis], [0], [1]), x.slice([axis], [0], [n - 1])], axis=axis)
    return paddle.concat([x.slice([axis], [1], [n]), x.slice([axis], [n - 1], [n])], axis=axis)


def _fancy_upsample(c):
    """libjpeg's h2v2_fancy_upsample on integer-valued chroma [B,2,h,w] -> [B,2,2h,2w]:
    triangular 3/4-1/4 weights in each direction, with its rounding (+8 and +7, then /16)."""
    rows = _interleave(3 * c + _shift(c, 2, -1), 3 * c + _shift(c, 2, 1), axis=2)
    left = paddle.floor((3 * rows + _shift(rows, 3, -1) + 8) / 16)
    right = paddle.floor((3 * rows + _shift(rows, 3, 1) + 7) / 16)
    return _interleave(left, right, axis=3)


def _jpeg_codec(pixels, qualities, valid_hw):
    """Encode + decode integer-valued RGB pixels [B,3,H,W] (0..255, H and W multiples of 16, padded
    past valid_hw[b] by edge repetition) at per-sample qualities; returns integer-valued RGB 0..255."""
    b, _, h, w = pixels.shape
    r, g, bl = pixels[:, 0:1], pixels[:, 1:2], pixels[:, 2:3]
    # libjpeg's fixed-point colour conversion rounds Y to nearest and Cb/Cr to nearest-but-ties-down.
    y = paddle.floor(0.29900 * r + 0.58700 * g + 0.11400 * bl + 0.5)
    cb = paddle.floor(-0.16874 * r - 0.33126 * g + 0.5 * bl + 128.0 + 0.5 - 1.0 / 65536)
    cr = paddle.floor(0.5 * r - 0.41869 * g - 0.08131 * bl + 128.0 + 0.5 - 1.0 / 65536)
    chroma = paddle.concat([cb, cr], axis=1)
    # 4:2:0: 2x2 sums with libjpeg's rounding bias 1, 2, 1, 2, ... along each output row.
    sums = F.avg_pool2d(chroma, 2, 2) * 4
    bias = paddle.to_tensor(np.tile([1.0, 2.0], w // 4).astype(np.float32)).reshape([1, 1, 1, w // 2])
    chroma = paddle.floor((sums + bias) / 4)
    # libjpeg fills the last 16-row MCU by repeating the last downsampled chroma row (the full-size
    # rows are repeated only up to the next even row); horizontally it repeats full-size columns,
    # which the caller's padding already did.
    chroma_h = [-(-vh // 2) for vh, _ in valid_hw]
    chroma = _replicate_beyond(chroma, chroma_h, [w // 2] * b)

    tables = [quantization_tables(q) for q in qualities]
    q_luma = paddle.to_tensor(np.stack([t[0] for t in tables]).astype(np.float32)).reshape([b, 1, 1, 1, 8, 8])
    q_chroma = paddle.to_tensor(np.stack([t[1] for t in tables]).astype(np.float32)).reshape([b, 1, 1, 1, 8, 8])
    dct = paddle.to_tensor(_DCT)

    def roundtrip(plane, table):
        blocks = _blocks(plane - 128.0)
        coef = paddle.matmul(paddle.matmul(dct, blocks), dct, transpose_y=True)
        coef = paddle.round(coef / table) * table       # quantise (ties away from zero) and dequantise
        rec = paddle.matmul(paddle.matmul(dct, coef, transpose_x=True), dct)
        return paddle.clip(paddle.floor(_unblocks(rec) + 128.0 + 0.5), 0, 255)

    y = roundtrip(y, q_luma)
    chroma = roundtrip(chroma, q_chroma)
    # The decoder upsamples only the real chroma samples, repeating the last one at the image edge.
    chroma = _replicate_beyond(chroma, chroma_h, [-(-vw // 2) for _, vw in valid_hw])
    chroma = _fancy_upsample(chroma) - 128.0
    cb, cr = chroma[:, 0:1], chroma[:, 1:2]
    rgb = paddle.concat([
        y + paddle.floor(1.40200 * cr + 0.5),
        y + paddle.floor(-0.34414 * cb - 0.71414 * cr + 0.5),
        y + paddle.floor(1.77200 * cb + 0.5)], axis=1)
    return paddle.clip(rgb, 0, 255)


@paddle.no_grad()
def jpeg_compress(images, quality):
    """JPEG encode + decode of a batch, in Paddle: images [B,3,H,W] RGB float in [0,1] (any H, W);
    quality an int or one int per sample. Returns float32 [B,3,H,W] in [0,1] on the same device, the
    counterpart of cv2.imencode('.jpg') + cv2.imdecode (4:2:0, libjpeg's tables and rounding)."""
    b, _, h, w = images.shape
    qualities = [int(quality)] * b if np.isscalar(quality) else [int(q) for q in quality]
    if len(qualities) != b:
        raise ValueError(f"{len(qualities)} qualities for a batch of {b}")
    hp, wp = _round_up(h, 16), _round_up(w, 16)
    pixels = paddle.round(paddle.clip(images.astype("float32"), 0, 1) * 255.0)
    if (hp, wp) != (h, w):
        pixels = F.pad(pixels, [0, wp - w, 0, hp - h], mode="replicate")
    out = _jpeg_codec(pixels, qualities, [(h, w)] * b)
    return out[:, :, :h, :w] / 255.0


class DeviceDegradation:
    """Batched GFPGAN degradation on Paddle's current device, forward only.

    degrader = DeviceDegradation(cfg.degradation, seed=cfg.train.seed * world_size + rank)
    lq, hq = degrader(hq)        # hq: [B,3,H,W] float32 in [-1, 1] (what FaceDataset gives in 'device' mode)

    Returns (lq, hq_out), both [B,3,H,W] float32 in [-1, 1]; hq_out is hq after the flip and gray steps.
    The per-sample parameters come from the shared `DegradationSampler` with this object's seeded RNGs
    (or pass `params`, a list of B `DegradationParams`); the noise comes from Paddle's generator.
    """

    def __init__(self, cfg=None, seed=0):
        self.sampler = cfg if isinstance(cfg, DegradationSampler) else DegradationSampler(cfg)
        self.seed = int(seed)
        seq = np.random.SeedSequence(int(seed) % (1 << 64))
        self._py_rng = random.Random(int(seq.generate_state(1, dtype=np.uint64)[0]))
        self._np_rng = np.random.Generator(np.random.PCG64(seq))

    def sample(self, batch, size_hw):
        return [self.sampler.sample(size_hw, self._py_rng, self._np_rng, draw_noise=False) for _ in range(batch)]

    def seed_step(self, step):
        """Make the next batch's degradation a function of (seed, step) alone: re-seeds the parameter RNGs
        and Paddle's noise generator, so a resumed training run degrades its batches exactly as the
        uninterrupted one did."""
        self._py_rng, self._np_rng = keyed_rngs(DEVICE_STREAM, self.seed, step)
        paddle.seed(int(np.random.SeedSequence([DEVICE_STREAM, self.seed % (1 << 64), step]).generate_state(1)[0]))

    @paddle.no_grad()
    def __call__(self, hq, params=None):
        if hq.ndim != 4 or hq.shape[1] != 3:
            raise ValueError(f"expected a batch [B, 3, H, W], got {hq.shape}")
        b, _, h, w = hq.shape
        params = self.sample(b, (h, w)) if params is None else list(params)
        if len(params) != b:
            raise ValueError(f"{len(params)} parameter sets for a batch of {b}")

        def mask(values):
            return paddle.to_tensor(np.asarray(values, np.float32).reshape(b, 1, 1, 1))

        x = (hq.astype("float32") + 1.0) * 0.5
        flip = mask([p.flip for p in params])
        x = flip * paddle.flip(x, axis=[3]) + (1.0 - flip) * x
        gray = mask([p.gray for p in params])
        # cv2's RGB2GRAY weights (the authors' BGR2GRAY on BGR data).
        luma = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        x = gray * luma.expand([b, 3, h, w]) + (1.0 - gray) * x
        hq_out = x

        # Blur: correlation with each sample's kernel through FFTs of the reflect-padded images.
        k = self.sampler.kernel_size
        r = k // 2
        kernels = np.stack([p.kernel.build(k)[::-1, ::-1] for p in params]).astype(np.float32)
        fh, fw = _fast_len(h + 2 * r), _fast_len(w + 2 * r)
        padded = F.pad(x, [r, r, r, r], mode="reflect")
        placed = F.pad(paddle.to_tensor(kernels)[:, None], [0, fw - k, 0, fh - k])
        placed = paddle.roll(placed, shifts=[-r, -r], axis=[2, 3])
        spectrum = paddle.fft.rfft2(padded, s=[fh, fw]) * paddle.fft.rfft2(placed)
        x = paddle.fft.irfft2(spectrum, s=[fh, fw])[:, :, r:r + h, r:r + w]

        # Downscale into the shared canvas (per-sample bilinear grids, edges repeated past each LQ size).
        lq_hw = [p.lq_size(h, w) for p in params]
        canvas_hw = (_round_up(max(s[0] for s in lq_hw), 16), _round_up(max(s[1] for s in lq_hw), 16))
        grid = _resize_grid([(h, w)] * b, lq_hw, canvas_hw, (h, w))
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

        if any(p.noise_sigma is not None for p in params):
            sigma = mask([(p.noise_sigma or 0.0) / 255.0 for p in params])
            noise = paddle.randn(x.shape, dtype="float32")
            noise_gray = mask([p.noise_gray for p in params])
            noise = noise_gray * noise[:, 0:1].expand(x.shape) + (1.0 - noise_gray) * noise
            x = paddle.clip(x + noise * sigma, 0, 1)
            # The noise broke the edge repetition the JPEG blocks need: repeat the noisy edge again.
            x = _replicate_beyond(x, [s[0] for s in lq_hw], [s[1] for s in lq_hw])
        x = paddle.round(paddle.clip(x, 0, 1) * 255.0)
        qualities = [p.jpeg_quality for p in params]
        if any(q is not None for q in qualities):
            if any(q is None for q in qualities):
                raise ValueError("either every sample or none has a JPEG step")
            x = _jpeg_codec(x, qualities, lq_hw)
        x = x / 255.0

        grid = _resize_grid(lq_hw, [(h, w)] * b, (h, w), canvas_hw)
        lq = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return lq * 2.0 - 1.0, hq_out * 2.0 - 1.0
