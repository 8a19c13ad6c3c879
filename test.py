"""Evaluate restoration the three ways the field reports it: FID, PSNR, SSIM, LPIPS, identity, NIQE.

    # synthetic: sharp faces degraded on the fly with the seeded test-time degradation
    python test.py -w GPEN-BFR-256.pth --test_path CelebA-HQ/ --inception_weights pt_inception-2015-12-05-6726825d.pth
    # paired: given LQ files and their ground truth, matched by name (CelebA-Test)
    python test.py -w GPEN-BFR-512.pth --lq_path celeba_512_validation_lq/ --hq_path celeba_512_validation/ \
        --inception_weights pt_inception-2015-12-05-6726825d.pth --id_weights model_ir_se50.pth
    # no reference: LQ files only (LFW-Test, WebPhoto-Test, CelebChild-Test): FID against statistics, NIQE
    python test.py -w GPEN-BFR-512.pth --lq_path lfw_cropped_faces/ --inception_weights pt_inception.pth \
        --fid_stats inception_FFHQ_512-f7b384ab.pth

Prints `FID: x`, `PSNR: y`, ... and writes report.json (protocol, counts, weights hash, config, versions,
the means) with a per-image table beside it (<report>_per_image.csv). --save_dir writes restored/ and,
where there is a ground truth, target/ (the faces PSNR was computed against) as PNG, so every number can
be recomputed from the files; the synthetic protocol also writes degraded/ and sharp/ (its FID reference).
Paired and no-reference inputs are resized to the model's size with data.lq_interpolation (bilinear,
like the field's inference scripts); the ground truth with data.interpolation. Every LQ face of the
paired protocol needs its ground truth (else refused, naming them); ground truths without an LQ are
counted and left out. See metric/evaluation.py for what each number is.
"""
import argparse
import math
import os
import sys

from utils.config import add_config_arguments, config_from_args, model_flags_given
from utils.errors import UserError, run_cli
from utils.runtime import prepare_cpu

FLAGS = {"weights": "eval.weights", "test_path": "data.test_path", "lq_path": "data.lq_path",
         "hq_path": "data.hq_path", "lq_interpolation": "data.lq_interpolation", "seed": "data.test_seed",
         "batch_size": "eval.batch_size", "save_dir": "eval.save_dir", "inception_weights": "eval.inception_weights",
         "fid_stats": "eval.fid_stats", "id_weights": "train.id_weights", "report": "eval.report",
         "num_workers": "data.num_workers", "lpips_weights": "eval.lpips_weights",
         "lpips_backbone": "eval.lpips_backbone", "niqe": "eval.niqe"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_config_arguments(parser, legacy=("size", "mul", "channel_multiplier", "narrow", "threads", "device"))
    parser.add_argument("-w", "--weights", "--w", dest="weights", default=None,
                        help="generator weights: our .pdparams / training checkpoint or the authors' .pth")
    parser.add_argument("--test_path", default=None,
                        help="synthetic protocol: folder of sharp test faces (e.g. CelebA-HQ), degraded here")
    parser.add_argument("--lq_path", default=None,
                        help="paired / no-reference protocol: folder of low-quality faces given as files")
    parser.add_argument("--hq_path", default=None, help="paired protocol: the ground truth of --lq_path, same names")
    parser.add_argument("--lq_interpolation", choices=("area", "nearest", "bilinear", "bicubic"), default=None,
                        help="resize of --lq_path faces to the model's size (data.lq_interpolation, bilinear)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the test-time degradation (data.test_seed)")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--save_dir", default=None,
                        help="write restored/ and target/ (and degraded/, sharp/ for --test_path) here")
    parser.add_argument("--inception_weights", default=None,
                        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or its .pdparams)")
    parser.add_argument("--fid_stats", default=None,
                        help="FID reference statistics: pytorch-fid's .npz (mu, sigma) or BasicSR's .pth "
                             "(inception_FFHQ_512-f7b384ab.pth); required for FID with --lq_path alone")
    parser.add_argument("--id_weights", default=None, help="ArcFace model_ir_se50.pth for the identity metrics")
    parser.add_argument("--lpips_weights", default=None,
                        help="LPIPS linear heads: lpips 0.1.4's lpips/weights/v0.1/alex.pth (with --lpips_backbone)")
    parser.add_argument("--lpips_backbone", default=None,
                        help="LPIPS backbone: torchvision's alexnet-owt-7be5be79.pth (with --lpips_weights)")
    parser.add_argument("--no_niqe", dest="niqe", action="store_const", const=False, default=None,
                        help="skip NIQE (eval.niqe=false)")
    parser.add_argument("--report", default=None, help="JSON report path (default <save_dir or .>/report.json)")
    parser.add_argument("--num_workers", type=int, default=None)
    parser.add_argument("--limit", type=int, default=0, help="evaluate the first N faces only")
    parser.add_argument("--backend", choices=("auto", "dygraph", "predictor"), default="auto",
                        help="how the generator and the FID network run: auto = the oneDNN predictor on CPU "
                             "(checked against dygraph), dygraph on GPU")
    return parser.parse_args(argv)


def choose_protocol(args, cfg):
    """'synthetic' | 'paired' | 'no_reference' from the folders given (a config's test_path, which a
    training config carries for validation, gives way to an --lq_path)."""
    if args.test_path and args.lq_path:
        raise UserError("--test_path (sharp faces, degraded here) and --lq_path (given LQ faces) are two protocols: "
                        "pass one of them")
    if cfg.data.hq_path and not cfg.data.lq_path:
        raise UserError("--hq_path is the ground truth of --lq_path: pass the LQ folder too")
    if cfg.data.lq_path:
        return "paired" if cfg.data.hq_path else "no_reference"
    if cfg.data.test_path:
        return "synthetic"
    raise UserError("no test faces given: pass --test_path (sharp faces, degraded here), --lq_path with --hq_path "
                    "(given pairs) or --lq_path alone (no ground truth)")


def build_faces(protocol, cfg):
    from data_loader.dataset import DegradedFaces, LowQualityFaces, PairedFaces

    if protocol == "synthetic":
        return DegradedFaces(cfg.data.test_path, cfg.model.size, cfg.data.interpolation, cfg.degradation,
                             seed=cfg.data.test_seed), {"test_path": cfg.data.test_path}
    if protocol == "paired":
        return (PairedFaces(cfg.data.lq_path, cfg.data.hq_path, cfg.model.size, cfg.data.lq_interpolation,
                            cfg.data.interpolation), {"lq_path": cfg.data.lq_path, "hq_path": cfg.data.hq_path})
    return LowQualityFaces(cfg.data.lq_path, cfg.model.size, cfg.data.lq_interpolation), {"lq_path": cfg.data.lq_path}


def build_scorers(cfg, protocol, count, backend="auto"):
    from metric.evaluation import Scorers

    scorers = Scorers(niqe=cfg.eval.niqe)
    if cfg.eval.inception_weights:
        if protocol == "no_reference" and not cfg.eval.fid_stats:
            raise UserError("FID without ground truth needs reference statistics: pass --fid_stats (e.g. BasicSR's "
                            "inception_FFHQ_512-f7b384ab.pth, or a file from tools/fid_stats.py)")
        if count < 2:
            raise UserError(f"FID needs at least 2 faces to estimate a covariance; the test set gives {count}")
        from deploy.features import inception_features
        from metric.fid import load_statistics
        scorers.fid_reference = load_statistics(cfg.eval.fid_stats) if cfg.eval.fid_stats else None
        scorers.features = inception_features(cfg.eval.inception_weights, backend=backend)
    else:
        from metric.inception import WEIGHTS_HINT
        print(f"FID skipped: {WEIGHTS_HINT}", file=sys.stderr)
    if protocol == "no_reference":
        return scorers  # the identity metrics and LPIPS compare with a ground truth
    if cfg.train.id_weights:
        from loss.id_loss import IDLoss
        scorers.identity = IDLoss(cfg.train.id_weights)
    if cfg.eval.lpips_weights and cfg.eval.lpips_backbone:
        from metric.lpips import load_lpips
        scorers.lpips = load_lpips(cfg.eval.lpips_weights, cfg.eval.lpips_backbone)
    else:
        from metric.lpips import WEIGHTS_HINT as LPIPS_HINT
        missing = " and ".join(flag for flag, value in (("--lpips_weights", cfg.eval.lpips_weights),
                                                         ("--lpips_backbone", cfg.eval.lpips_backbone)) if not value)
        print(f"LPIPS skipped: no {missing} given. {LPIPS_HINT}", file=sys.stderr)
    return scorers


def print_results(result, backend):
    means, counts = result.means, result.counts
    if "fid" in means:
        print(f"FID: {means['fid']:.4f}")
    if "psnr" in means:
        identical = counts["psnr_identical_pairs"]
        print(f"PSNR: {means['psnr']:.4f}" + (f" ({identical} identical pairs excluded)" if identical else ""))
        print(f"SSIM: {means['ssim']:.4f}")
    for key, label in (("lpips", "LPIPS"), ("identity_distance", "ID distance"), ("identity_degrees", "ID degrees")):
        if key in means:
            print(f"{label}: {means[key]:.4f}")
    if "niqe_undefined" in counts:
        undefined = f"{counts['niqe_undefined']} faces too small or too flat for NIQE (two 96x96 blocks needed)"
        if "niqe" not in means:
            print(f"NIQE: undefined ({undefined}: all of them)")
        else:
            print(f"NIQE: {means['niqe']:.4f}" + (f" ({undefined} left out)" if counts["niqe_undefined"] else ""))
    n = counts["faces"]
    print(f"{n} faces ({result.protocol}) in {result.seconds:.1f} s ({result.seconds / max(n, 1):.3f} s per face, "
          f"{backend} backend)")


def main(argv=None):
    args = parse_args(argv)
    cfg = config_from_args(args, {k: getattr(args, n) for n, k in FLAGS.items() if getattr(args, n) is not None})
    if not cfg.eval.weights:
        raise UserError("no generator weights given: pass -w/--weights (our .pdparams or the authors' .pth)")
    protocol = choose_protocol(args, cfg)
    prepare_cpu(cfg.runtime.threads)

    from deploy.runner import GeneratorRunner
    from metric.evaluation import evaluate, per_image_path, write_report
    from model.loading import load_generator
    from utils.config import config_to_dict
    from utils.runtime import select_device

    select_device(cfg.runtime.device)
    generator, cfg.model = load_generator(cfg.eval.weights, cfg.model if model_flags_given(args) else None)
    faces, inputs = build_faces(protocol, cfg)  # refuses unmatched pairs before any work
    unmatched = getattr(faces, "unmatched_hq", [])
    if args.limit:
        from data_loader.dataset import FirstFaces
        faces = FirstFaces(faces, args.limit)
    if unmatched:
        print(f"{len(unmatched)} ground-truth faces under {cfg.data.hq_path} have no LQ face and are left out",
              file=sys.stderr)
    scorers = build_scorers(cfg, protocol, len(faces), args.backend)
    runner = GeneratorRunner(generator, cfg.model.size, backend=args.backend)
    result = evaluate(faces, runner, scorers, protocol, batch_size=cfg.eval.batch_size,
                      num_workers=cfg.data.num_workers, save_dir=cfg.eval.save_dir)
    if protocol == "paired":
        result.counts["hq_without_lq"] = len(unmatched)
    print_results(result, runner.backend)
    report = cfg.eval.report or os.path.join(cfg.eval.save_dir or ".", "report.json")
    statistics_file = cfg.eval.fid_stats if scorers.features is not None and cfg.eval.fid_stats else None
    write_report(report, result, config_to_dict(cfg), cfg.eval.weights, runner.backend, inputs,
                 fid_reference=statistics_file)
    print(f"report written to {report}, per face to {per_image_path(report)}")
    return 1 if math.isnan(result.means.get("psnr", 0.0)) else 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
