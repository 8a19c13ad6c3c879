"""Pre- and post-processing between images and the generator, shared by every script.

Images: RGB uint8 HWC (as utils.image_io reads them). Network: float32 NCHW RGB in [-1, 1]
(x/127.5 − 1, the authors' (x/255 − 0.5)/0.5). Outputs are clipped to [-1, 1] and rounded to 8 bit.
"""
import cv2
import numpy as np

INTERPOLATIONS = {"area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR,
                  "bicubic": cv2.INTER_CUBIC}


def resize_square(image, size, interpolation="area"):
    """Resize an RGB uint8 image to size × size (no-op when it already is)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=INTERPOLATIONS[interpolation])


def to_network(images):
    """(N, H, W, 3) uint8 or float in [0, 1] -> float32 (N, 3, H, W) in [-1, 1]; one (H, W, 3) image
    -> (3, H, W)."""
    images = np.asarray(images)
    if images.ndim == 3:
        return to_network(images[None])[0]
    if images.dtype == np.uint8:
        x = images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    else:
        x = images.astype(np.float32) * np.float32(2.0) - np.float32(1.0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def to_images(x):
    """float (N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8 (clipped, rounded); one (3, H, W) -> (H, W, 3)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        return to_images(x[None])[0]
    return np.clip(np.round((x.transpose(0, 2, 3, 1) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def side_by_side(*images):
    """Concatenate equally tall RGB images horizontally."""
    return np.concatenate(images, axis=1)
