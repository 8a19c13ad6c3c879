"""Evaluate restoration on degraded test faces: FID, PSNR, SSIM (and ArcFace identity distance, LPIPS).

    python test.py -w GPEN-BFR-256.pth --test_path celeba_hq --inception_weights pt_inception.pth
    python test.py -w output/gpen_256/g_ema.pdparams -c configs/gpen_256.yaml --batch_size 8 --save_dir results
    python test.py -w GPEN-BFR-256.pth --test_path celeba_hq --lpips_weights alex.pth \
        --lpips_backbone alexnet-owt-7be5be79.pth

Prints `FID: x` and `PSNR: y` (and the others) and writes a JSON report (weights hash, config, N,
seed, versions). Every number repeats exactly across runs and batch sizes (see metric/evaluation.py).
"""
import argparse
import math
import os
import sys

from utils.config import add_config_arguments, config_from_args
from utils.errors import UserError, run_cli
from utils.runtime import prepare_cpu

FLAGS = {"weights": "eval.weights", "test_path": "data.test_path", "seed": "data.test_seed",
         "batch_size": "eval.batch_size", "save_dir": "eval.save_dir", "inception_weights": "eval.inception_weights",
         "fid_stats": "eval.fid_stats", "id_weights": "train.id_weights", "report": "eval.report",
         "num_workers": "data.num_workers", "lpips_weights": "eval.lpips_weights",
         "lpips_backbone": "eval.lpips_backbone"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_config_arguments(parser, legacy=("size", "mul", "channel_multiplier", "narrow", "threads", "device"))
    parser.add_argument("-w", "--weights", "--w", dest="weights", default=None,
                        help="generator weights: our .pdparams / training checkpoint or the authors' .pth")
    parser.add_argument("--test_path", default=None, help="folder of sharp test faces (e.g. CelebA-HQ)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the test-time degradation (data.test_seed)")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--save_dir", default=None, help="write restored/ and degraded/ images here")
    parser.add_argument("--inception_weights", default=None,
                        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or its .pdparams)")
    parser.add_argument("--fid_stats", default=None, help="reference statistics (.npz with mu, sigma) for FID")
    parser.add_argument("--id_weights", default=None, help="ArcFace model_ir_se50.pth for the identity distance")
    parser.add_argument("--lpips_weights", default=None,
                        help="LPIPS linear heads: lpips 0.1.4's lpips/weights/v0.1/alex.pth (with --lpips_backbone)")
    parser.add_argument("--lpips_backbone", default=None,
                        help="LPIPS backbone: torchvision's alexnet-owt-7be5be79.pth (with --lpips_weights)")
    parser.add_argument("--report", default=None, help="JSON report path (default <save_dir or .>/report.json)")
    parser.add_argument("--num_workers", type=int, default=None)
    parser.add_argument("--limit", type=int, default=0, help="evaluate the first N faces only")
    parser.add_argument("--backend", choices=("auto", "dygraph", "predictor"), default="auto",
                        help="generator backend: auto = oneDNN predictor on CPU (checked against dygraph)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    explicit_model = any(getattr(args, k) is not None for k in ("size", "mul", "channel_multiplier", "narrow")) \
        or args.config is not None
    cfg = config_from_args(args, {k: getattr(args, n) for n, k in FLAGS.items() if getattr(args, n) is not None})
    if not cfg.eval.weights:
        raise UserError("no generator weights given: pass -w/--weights (our .pdparams or the authors' .pth)")
    if not cfg.data.test_path:
        raise UserError("no test faces given: pass --test_path (a folder of sharp aligned faces)")
    prepare_cpu(cfg.runtime.threads)

    from utils.image_io import list_images
    count = len(list_images(cfg.data.test_path))
    if args.limit:
        count = min(count, args.limit)
    if cfg.eval.inception_weights and count < 2:
        raise UserError(f"FID needs at least 2 faces; {cfg.data.test_path} gives {count}")

    from deploy.runner import GeneratorRunner
    from metric.evaluation import evaluate, write_report
    from model.loading import load_generator
    from utils.config import config_to_dict
    from utils.runtime import select_device

    select_device(cfg.runtime.device)
    generator, model_cfg = load_generator(cfg.eval.weights, cfg.model if explicit_model else None)
    cfg.model = model_cfg
    inception = None
    if cfg.eval.inception_weights:
        from metric.fid import InceptionFeatures
        inception = InceptionFeatures(cfg.eval.inception_weights)
    else:
        from metric.inception import WEIGHTS_HINT
        print(f"FID skipped: {WEIGHTS_HINT}", file=sys.stderr)
    id_loss = None
    if cfg.train.id_weights:
        from loss.id_loss import IDLoss
        id_loss = IDLoss(cfg.train.id_weights)
    lpips = None
    if cfg.eval.lpips_weights and cfg.eval.lpips_backbone:
        from metric.lpips import load_lpips
        lpips = load_lpips(cfg.eval.lpips_weights, cfg.eval.lpips_backbone)
    else:
        from metric.lpips import WEIGHTS_HINT as LPIPS_HINT
        missing = " and ".join(flag for flag, value in (("--lpips_weights", cfg.eval.lpips_weights),
                                                         ("--lpips_backbone", cfg.eval.lpips_backbone)) if not value)
        print(f"LPIPS skipped: no {missing} given. {LPIPS_HINT}", file=sys.stderr)

    runner = GeneratorRunner(generator, cfg.model.size, backend=args.backend)
    metrics = evaluate(cfg, runner, inception, id_loss, limit=args.limit, save_dir=cfg.eval.save_dir, lpips=lpips)
    if "fid" in metrics:
        print(f"FID: {metrics['fid']:.4f}")
    print(f"PSNR: {metrics['psnr']:.4f}" + (f" ({metrics['psnr_identical_pairs']} identical pairs excluded)"
                                            if metrics["psnr_identical_pairs"] else ""))
    print(f"SSIM: {metrics['ssim']:.4f}")
    if "identity_distance" in metrics:
        print(f"ID distance: {metrics['identity_distance']:.4f}")
    if "lpips" in metrics:
        print(f"LPIPS: {metrics['lpips']:.4f}")
    n = metrics["count"]
    print(f"{n} faces in {metrics['seconds']:.1f} s ({metrics['seconds'] / max(n, 1):.3f} s per face, "
          f"{runner.backend} backend)")
    report = cfg.eval.report or os.path.join(cfg.eval.save_dir or ".", "report.json")
    write_report(report, config_to_dict(cfg), cfg.eval.weights, metrics, runner.backend)
    print(f"report written to {report}")
    return 0 if not math.isnan(metrics["psnr"]) else 1


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
