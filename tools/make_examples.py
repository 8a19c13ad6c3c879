"""Rebuild the sample images in examples/ from the shared test material (see examples/README.md).

    python tools/make_examples.py --source ../shared/data --out examples

Faces: the ten FFHQ faces (ffhq/, 1024² PNG) for training and the first eight CelebA-HQ faces by name
(celeba_hq/, 1024² JPEG) for testing, each shrunk to 256² with OpenCV's area filter and stored as JPEG
quality 90. Photo: the Solvay 1927 group photo (wild/, 1328x568, gray stored as RGBA) shrunk to 800 px wide
and stored as a one-channel JPEG, quality 90 — it is a grayscale photograph, and it stays one.
The output repeats byte for byte with the same OpenCV build (its JPEG encoder decides the bytes).
"""
import argparse
import os
import sys

import cv2
import numpy as np

from utils.errors import UserError, run_cli
from utils.image_io import list_images, read_image

FACE_SIZE = 256       # px, the largest model the lite data is meant for (GPEN-BFR-256)
PHOTO_WIDTH = 800     # px; MTCNN still finds 28 of the 29 faces at this width (as at the original 1328)
JPEG_QUALITY = 90
TRAIN_FACES = ("ffhq", 10, "ffhq_")          # source folder, how many (first by name), name prefix
TEST_FACES = ("celeba_hq", 8, "celebahq_")
PHOTO = ("wild", "Solvay_conference_1927.png", "solvay_1927.jpg")


def write_jpeg(path, pixels):
    """pixels: RGB (H, W, 3) or gray (H, W) uint8."""
    bgr = pixels if pixels.ndim == 2 else np.ascontiguousarray(pixels[:, :, ::-1])
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise UserError(f"could not encode {path}")
    encoded.tofile(path)
    return encoded.size


def make_faces(source, out, spec):
    folder, count, prefix = spec
    paths = list_images(os.path.join(source, folder))[:count]
    if len(paths) < count:
        raise UserError(f"{os.path.join(source, folder)} holds {len(paths)} images; {count} are needed")
    os.makedirs(out, exist_ok=True)
    total = 0
    for path in paths:
        face = cv2.resize(read_image(path), (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
        name = prefix + os.path.splitext(os.path.basename(path))[0] + ".jpg"
        total += write_jpeg(os.path.join(out, name), face)
    return len(paths), total


def make_photo(source, out):
    folder, name, target = PHOTO
    rgb = read_image(os.path.join(source, folder, name))
    if not (np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])):
        raise UserError(f"{name} is expected to be a grayscale photograph (equal R, G and B)")
    height = round(rgb.shape[0] * PHOTO_WIDTH / rgb.shape[1])
    gray = cv2.resize(rgb[:, :, 0], (PHOTO_WIDTH, height), interpolation=cv2.INTER_AREA)
    os.makedirs(out, exist_ok=True)
    return write_jpeg(os.path.join(out, target), gray)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="../shared/data", help="the shared data folder (ffhq/, celeba_hq/, wild/)")
    parser.add_argument("--out", default="examples", help="where train/, test/ and photo/ are written")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.source):
        raise UserError(f"source folder not found: {args.source} (the shared test material's data/ folder)")
    grand = 0
    for part, spec in (("train", TRAIN_FACES), ("test", TEST_FACES)):
        count, size = make_faces(args.source, os.path.join(args.out, part), spec)
        grand += size
        print(f"{os.path.join(args.out, part)}: {count} faces, {size} bytes")
    size = make_photo(args.source, os.path.join(args.out, "photo"))
    grand += size
    print(f"{os.path.join(args.out, 'photo', PHOTO[2])}: {size} bytes")
    print(f"images in all: {grand} bytes")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
