"""The authors' other three GPEN tasks on aligned face images: colorization, inpainting and
segmentation-to-face, each a GPEN generator between the authors' pre- and post-processing.

Images are RGB uint8 HWC, the project's convention (utils.image_io). The authors' code works on OpenCV's
BGR and flips it to RGB for the network, so the network sees the same values; their BGR<->YUV
conversions are written here as RGB<->YUV, which give the same bytes.

* `FaceGenerator` is the authors' FaceGAN.process, batched: bilinear resize to the generator's input
  size, x/255, (x − 0.5)/0.5, the generator, ·0.5 + 0.5, clip to [0, 1], ·255 and TRUNCATION to uint8
  (not rounding: their numbers depend on it). Segmentation-to-face skips both normalisations (their
  `is_norm=False`: the network takes x/255 and its output is clipped to [0, 1] as it is).
* `colorize`, `inpaint`, `segmentation_to_face`: the tasks.
* `brush_strokes` (the authors' random strokes for inpainting), `missing_from_mask_image` (a user's mask,
  white = missing) and `paint_missing` (the missing pixels drawn white onto the image, as the authors'
  strokes are).
"""
import math

import cv2
import numpy as np

from utils.errors import UserError


def load_face_generator(path, in_size=None, out_size=None, key=None):
    """The GPEN generator of a weight file (architecture read off it), in eval mode.

    in_size / out_size: what the caller asks for (the authors' --in_size / --out_size); None accepts the
    file's. A file of other sizes is one UserError."""
    from model.loading import load_generator

    generator, _ = load_generator(path, key=key)
    have_in, have_out = generator.in_size, generator.size
    if (in_size is not None and in_size != have_in) or (out_size is not None and out_size != have_out):
        asked = f"in_size {in_size if in_size is not None else have_in}, out_size " \
                f"{out_size if out_size is not None else have_out}"
        raise UserError(f"{path}: holds a GPEN generator with in_size {have_in}, out_size {have_out}, but "
                        f"{asked} was asked for; pass --in_size {have_in}"
                        + (f" --out_size {have_out}" if have_out != have_in else ""))
    return generator


class FaceGenerator:
    """A GPEN generator on face images: `fg(faces)` with (H, W, 3) or (N, H, W, 3) RGB uint8 of any size
    -> (out_size, out_size, 3) or (N, out_size, out_size, 3) RGB uint8 (see the module doc).

    backend / threads: `deploy.checked.checked_layer`'s (the oneDNN predictor on a CPU, checked against
    dygraph; dygraph on a GPU). noise_rng: for a generator whose encoder works below its output size,
    None uses its fixed seeded noise (same input, same output); a numpy Generator draws fresh noise from
    it on every call, the authors' behaviour (pass `np.random.default_rng()` for their unseeded draws);
    that mode runs in dygraph.
    """

    def __init__(self, generator, backend="auto", threads=0, noise_rng=None):
        from deploy.checked import CheckedNetwork
        from deploy.runner import GeneratorRunner

        self.in_size = generator.in_size
        self.out_size = generator.size
        if noise_rng is not None and generator.noise_shapes:
            self._network = CheckedNetwork(None, _with_fresh_noise(generator, noise_rng), "GPEN generator")
        else:  # the runner's policy: on a CPU one face per predictor call, the fastest per face there
            self._network = GeneratorRunner(generator, self.in_size, backend=backend, threads=threads)

    @property
    def backend(self):
        return self._network.backend

    def __call__(self, faces, normalized=True):
        """normalized False: the authors' is_norm=False (inputs in [0, 1], outputs clipped as they are)."""
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.shape[-1] != 3 or faces.ndim not in (3, 4):
            raise ValueError(f"expected RGB uint8 faces (H, W, 3) or (N, H, W, 3), got {faces.dtype} {faces.shape}")
        if faces.ndim == 3:
            return self(faces[None], normalized)[0]
        size = self.in_size
        resized = np.stack([face if face.shape[:2] == (size, size) else cv2.resize(face, (size, size))
                            for face in faces])  # cv2's default, bilinear, as the authors
        return self._to_images(self._network(self._to_network(resized, normalized)), normalized)

    @staticmethod
    def _to_network(faces, normalized):
        x = faces.astype(np.float32) / np.float32(255.0)
        if normalized:
            x = (x - np.float32(0.5)) / np.float32(0.5)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    @staticmethod
    def _to_images(y, normalized):
        y = np.asarray(y, dtype=np.float32).transpose(0, 2, 3, 1)
        if normalized:
            y = y * np.float32(0.5) + np.float32(0.5)
        return (np.clip(y, 0, 1) * np.float32(255.0)).astype(np.uint8)  # truncation, as the authors


def _with_fresh_noise(generator, rng):
    import paddle

    generator.eval()

    @paddle.no_grad()
    def run(x):
        noise = generator.random_noise(x.shape[0], rng)
        return generator(paddle.to_tensor(x), noise=noise)[0].numpy()

    return run


# ----------------------------------------------------------------------------------------------
# The tasks.

def colorize(face_generator, gray):
    """A gray face (three equal channels) -> colour. When the output size differs from the input's, the
    output is resized (bilinear) to the input's size and keeps only its colour: its luminance (Y of
    YUV) is replaced by the gray input's (the authors' post_process)."""
    out = face_generator(gray)
    if out.shape[:2] == gray.shape[:2]:
        return out
    out = cv2.resize(out, (gray.shape[1], gray.shape[0]))
    yuv = cv2.cvtColor(out, cv2.COLOR_RGB2YUV)
    yuv[:, :, 0] = cv2.cvtColor(gray, cv2.COLOR_RGB2YUV)[:, :, 0]
    return cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB)


def inpaint(face_generator, masked):
    """A face whose missing region is painted white (`paint_missing`) -> the completed face (out_size)."""
    return face_generator(masked)


def segmentation_to_face(face_generator, segmentation):
    """A CelebAMask-HQ colour map of face regions -> a face (out_size); the authors' is_norm=False."""
    return face_generator(segmentation, normalized=False)


# ----------------------------------------------------------------------------------------------
# Masks for inpainting.

# The authors' brush strokes (demo.brush_stroke_mask): 1-3 strokes; each a polyline of 8-27 segments
# whose directions alternate around 2π/5 (± up to 2π/15), lengths ~ N(r, r//2) clipped to [0, 2r] with
# r = diagonal/8, drawn 12-80 px wide with a disc at every vertex.
STROKES = (1, 4)           # randint bounds: number of strokes
VERTICES = (8, 28)         # randint bounds: segments per stroke
MEAN_ANGLE = 2 * math.pi / 5
ANGLE_RANGE = 2 * math.pi / 15
WIDTH = (12, 80)           # uniform bounds of the line width, truncated to int


def brush_strokes(height, width, rng, authors_axes=False):
    """Random brush strokes -> bool (height, width), True = missing.

    rng: a numpy RandomState; its draws are the authors' (their global np.random after np.random.seed(s)
    is RandomState(s)), so one RandomState(seed) passed for every image of a folder in order reproduces
    their demo. authors_axes: their code reads PIL's (width, height) as (h, w), so x is drawn in
    [0, height] and y in [0, width]; that differs only for non-square images (default: the right axes).
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise UserError("drawing the authors' brush strokes needs Pillow: pip install pillow "
                        "(or pass a mask image)") from None
    x_max, y_max = (height, width) if authors_axes else (width, height)
    radius = math.sqrt(height * height + width * width) / 8
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(*STROKES)):
        n = rng.randint(*VERTICES)
        low = MEAN_ANGLE - rng.uniform(0, ANGLE_RANGE)
        high = MEAN_ANGLE + rng.uniform(0, ANGLE_RANGE)
        angles = [rng.uniform(low, high) if i % 2 else 2 * math.pi - rng.uniform(low, high) for i in range(n)]
        points = [(int(rng.randint(0, x_max)), int(rng.randint(0, y_max)))]
        for angle in angles:
            step = np.clip(rng.normal(loc=radius, scale=radius // 2), 0, 2 * radius)
            x, y = points[-1]
            points.append((int(np.clip(x + step * math.cos(angle), 0, x_max)),
                           int(np.clip(y + step * math.sin(angle), 0, y_max))))
        line_width = int(rng.uniform(*WIDTH))
        draw.line(points, fill=255, width=line_width)
        half = line_width // 2
        for x, y in points:
            draw.ellipse((x - half, y - half, x + half, y + half), fill=255)
    return np.asarray(canvas) > 0


def missing_from_mask_image(mask, shape):
    """A mask image (gray or RGB uint8), white = missing (gray >= 128) -> bool of `shape[:2]`; resized
    (nearest) when its size differs."""
    mask = np.asarray(mask)
    gray = cv2.cvtColor(mask, cv2.COLOR_RGB2GRAY) if mask.ndim == 3 else mask
    height, width = shape[:2]
    if gray.shape != (height, width):
        gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_NEAREST)
    return gray >= 128


def paint_missing(image, missing):
    """The image with its missing pixels white, as the authors draw their strokes onto the face."""
    out = np.array(image, copy=True)
    out[missing] = 255
    return out
