"""Reading and writing images: every image enters the project as 8-bit RGB, HWC, uint8.

OpenCV decodes (BGR, EXIF orientation applied); here the odd formats are normalised once:
grayscale is replicated to three channels, 16-bit is scaled to 8-bit with rounding, an alpha channel
is composited over white (faces on transparent backgrounds), and BGR becomes RGB. A file OpenCV cannot
decode is one UserError; OpenCV's own `[ WARN ... ]` lines about it are not printed beside it.

Gray pictures (old photos, GPEN's most common input) are restored as RGB; `read_image(path,
gray_paths=found)` appends the path of each one to `found`, and `gray_notice(found)` is the one line a
tool prints about them.
"""
import contextlib
import os

import cv2
import numpy as np

from utils.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def is_image_file(path):
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder):
    """All image files under `folder` (recursive), sorted by their path relative to it."""
    if not os.path.isdir(folder):
        raise UserError(f"image folder not found: {folder}")
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        found.extend(os.path.join(root, name) for name in files if is_image_file(name))
    found.sort(key=lambda p: os.path.relpath(p, folder))
    return found


def to_rgb8(image):
    """Any decoded OpenCV image (gray, BGR, BGRA; uint8 or uint16 or float) -> RGB uint8 HWC."""
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 2:  # gray + alpha
        image = image[:, :, [0, 0, 0, 1]]
    channels = image.shape[2]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 4:  # composite over white
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        bgr = image[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        image = np.clip(np.round(bgr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[:, :, 2::-1])


@contextlib.contextmanager
def _opencv_quiet():
    """OpenCV's log silenced: a broken file is reported once, by our UserError."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:  # an OpenCV build without the logging module
        yield
        return
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def read_image(path, gray_paths=None):
    """Read `path` as RGB uint8 HWC; a missing or undecodable file raises a UserError naming it.

    A grayscale file (one channel, or gray + alpha) is replicated to three channels. When `gray_paths` is
    a list, the path of every image whose picture is gray (such a file, or a colour file with equal R, G
    and B, as scanned old photos often are) is appended to it: print `gray_notice(gray_paths)` once.
    """
    if not os.path.isfile(path):
        raise UserError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode also handles non-ASCII paths
    # JPEG (the only common format with EXIF orientation, and never 16-bit or alpha): IMREAD_COLOR
    # applies the orientation. Others: IMREAD_UNCHANGED keeps 16-bit and alpha for to_rgb8.
    is_jpeg = data[:3].tobytes() == b"\xff\xd8\xff"
    with _opencv_quiet():
        image = cv2.imdecode(data, cv2.IMREAD_COLOR if is_jpeg else cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise UserError(f"not a readable image: {path}")
    rgb = to_rgb8(image)
    if gray_paths is not None and np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) \
            and np.array_equal(rgb[:, :, 1], rgb[:, :, 2]):
        gray_paths.append(path)
    return rgb


def gray_notice(gray_paths):
    """The one line to print about the gray images `read_image` collected ("" when there were none)."""
    if not gray_paths:
        return ""
    what = (f"{gray_paths[0]} is a grayscale image" if len(gray_paths) == 1 else
            f"{len(gray_paths)} grayscale images ({gray_paths[0]}, ...)")
    return f"{what}: restored as RGB, the gray level copied to all three channels"


def write_image(path, rgb):
    """Write an RGB uint8 HWC image; the folder is created; the format follows the extension."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    ext = os.path.splitext(path)[1] or ".png"
    ok, encoded = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise UserError(f"could not encode an image for {path}")
    encoded.tofile(path)
