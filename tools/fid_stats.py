"""FID reference statistics of a folder of images, computed once (pytorch-fid's `--save-stats`).

    python tools/fid_stats.py ffhq/ inception_FFHQ_512.npz --size 512 --inception_weights pt_inception-2015-12-05-6726825d.pth

Every image under FOLDER (recursive, sorted) goes through pytorch-fid's Inception (its bilinear resize to
299 included) and the mean and covariance of the 2048-d pool3 features are written to OUT as an .npz with
`mu` and `sigma` (float64), the file pytorch-fid writes and reads, and test.py's `--fid_stats`.
`--size S` first resizes every image to S x S (data.interpolation's area by default), e.g. FFHQ's 1024²
files to 512 for the statistics of 512-px faces, which is what BasicSR's `inception_FFHQ_512` holds.
Below 2,048 images the covariance is rank-deficient and a warning says so.
"""
import argparse
import sys

from utils.errors import UserError, run_cli
from utils.runtime import prepare_cpu


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("folder", help="folder of images (searched recursively)")
    parser.add_argument("out", help="statistics file to write (.npz with mu and sigma)")
    parser.add_argument("--inception_weights", required=True,
                        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or its .pdparams)")
    parser.add_argument("--size", type=int, default=0, help="resize every image to SIZE x SIZE first (0: as stored)")
    parser.add_argument("--interpolation", choices=("area", "nearest", "bilinear", "bicubic"), default="area",
                        help="the resize of --size")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--limit", type=int, default=0, help="the first N images only")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--backend", choices=("auto", "dygraph", "predictor"), default="auto",
                        help="Inception backend: auto = oneDNN predictor on CPU (checked against dygraph)")
    return parser.parse_args(argv)


def folder_features(paths, features, batch_size, size=0, interpolation="area", progress=True):
    """(N, 2048) features of the image files `paths`; consecutive images of one shape share a batch."""
    import numpy as np
    from tqdm import tqdm

    from metric.fid import extract_features
    from utils.image_io import read_image
    from utils.imaging import resize_square

    out, pending = [], []

    def flush():
        if pending:
            out.append(extract_features(features, np.stack(pending), batch_size))
            pending.clear()

    for path in tqdm(paths, desc="features", disable=not progress, dynamic_ncols=True):
        image = read_image(path)
        if size:
            image = resize_square(image, size, interpolation)
        if pending and (image.shape != pending[0].shape or len(pending) == batch_size):
            flush()
        pending.append(image)
    flush()
    return np.concatenate(out)


def main(argv=None):
    args = parse_args(argv)
    if not args.out.endswith(".npz"):
        raise UserError(f"{args.out}: the statistics are written as .npz (pytorch-fid's format); name it *.npz")
    prepare_cpu(args.threads)

    from deploy.features import inception_features
    from metric.fid import compute_statistics, save_statistics
    from utils.image_io import list_images

    paths = list_images(args.folder)
    if args.limit:
        paths = paths[:args.limit]
    if len(paths) < 2:
        raise UserError(f"FID statistics need at least 2 images; {args.folder} gives {len(paths)}")
    features = inception_features(args.inception_weights, backend=args.backend, threads=args.threads)
    mu, sigma = compute_statistics(folder_features(paths, features, args.batch_size, args.size, args.interpolation))
    save_statistics(args.out, mu, sigma)
    print(f"statistics of {len(paths)} images ({features.backend}) written to {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
