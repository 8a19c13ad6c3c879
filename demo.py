"""The authors' demo.py on this port: their flags, their weights/ folder, the files their demo writes.

    python demo.py --task FaceEnhancement --model GPEN-BFR-512 --in_size 512 --channel_multiplier 2 --narrow 1 \\
        --use_sr --sr_scale 4 --use_cuda --save_face --indir examples/imgs --outdir examples/outs-bfr
    python demo.py --task FaceColorization --model GPEN-Colorization-1024 --in_size 1024 --use_cuda \\
        --indir examples/grays --outdir examples/outs-colorization
    python demo.py --task FaceInpainting --model GPEN-Inpainting-1024 --in_size 1024 --use_cuda \\
        --indir examples/ffhq-10 --outdir examples/outs-inpainting
    python demo.py --task Segmentation2Face --model GPEN-Seg2face-512 --in_size 512 --use_cuda \\
        --indir examples/segs --outdir examples/outs-seg2face

Weights are the authors' files in --weights_dir (default weights/), found by their names: <model>.pth,
RetinaFace-R50.pth and ParseNet-latest.pth (FaceEnhancement), <sr_model>_x<sr_scale>.pth (--use_sr).
For every image of --indir: <name>_COMP<ext> (input | output), <name>_GPEN<ext> (output) and, with
--save_face, <name>_face00<ext>, ... (aligned crop | restored face).

The architecture is the one the authors' demo builds from these flags (FaceEnhancement: --in_size,
--channel_multiplier, --narrow; the other tasks: --in_size and the authors' out_size 1024 for
colorization and inpainting), checked against the file. What their code hard-codes (style_dim 512,
8 mapping layers; channel multiplier 2 and narrow 1 for the three tasks) is read off the file.
--dry_run prints what would run and which files it needs, and stops.

By default the authors' bugs are fixed (see README, "The authors' demo"); --authors keeps them, to
reproduce their outputs: RetinaFace's score divided by the shrink factor, Real-ESRNet's odd-size crop
and its x1 tiling failure, the whole photo super-resolved in one piece (--tile_size 0), fresh unseeded
noise above in_size, unseeded brush strokes with their swapped axes, --out_size ignored.
"""
import argparse
import os
import sys
import time
from dataclasses import dataclass

from utils.errors import UserError, run_cli
from utils.runtime import prepare_cpu

TASKS = ("FaceEnhancement", "FaceColorization", "FaceInpainting", "Segmentation2Face")
DETECTOR_FILE = "RetinaFace-R50.pth"   # RetinaFaceDetection's network name in the authors' code
PARSER_FILE = "ParseNet-latest.pth"    # FaceParse's default model name
# Output sizes the authors' task classes default to when demo.py passes only in_size.
TASK_OUT_SIZE = {"FaceColorization": 1024, "FaceInpainting": 1024}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    # The authors' flags, with their defaults.
    parser.add_argument("--model", default="GPEN-BFR-512", help="GPEN weights: <weights_dir>/<model>.pth")
    parser.add_argument("--task", default="FaceEnhancement", choices=TASKS)
    parser.add_argument("--key", default=None, help="entry of a training checkpoint (e.g. g_ema)")
    parser.add_argument("--in_size", type=int, default=512, help="the generator's input size")
    parser.add_argument("--out_size", type=int, default=None,
                        help="the generator's output size (default: in_size; 1024 for colorization and inpainting)")
    parser.add_argument("--channel_multiplier", type=int, default=2, help="FaceEnhancement's generator width")
    parser.add_argument("--narrow", type=float, default=1, help="FaceEnhancement's generator narrow factor")
    parser.add_argument("--alpha", type=float, default=1, help="mix with the crop: 1 = restored faces only")
    parser.add_argument("--use_sr", action="store_true", help="super-resolve the background (Real-ESRNet)")
    parser.add_argument("--use_cuda", action="store_true",
                        help="run on the GPU (a CPU build says so and runs on the CPU)")
    parser.add_argument("--save_face", action="store_true", help="also write each crop | restored face")
    parser.add_argument("--aligned", action="store_true", help="FaceEnhancement: the inputs are aligned faces")
    parser.add_argument("--sr_model", default="realesrnet", help="SR weights: <weights_dir>/<sr_model>_x<sr_scale>.pth")
    parser.add_argument("--sr_scale", type=int, default=2, choices=(1, 2, 4))
    parser.add_argument("--tile_size", type=int, default=None,
                        help="SR tile side in input pixels; 0 = the whole photo at once (the authors' default); "
                             "default: tiles of 768 output pixels (bounded memory)")
    parser.add_argument("--indir", default="examples/imgs", help="input folder")
    parser.add_argument("--outdir", default="results/outs-BFR", help="output folder")
    parser.add_argument("--ext", default=".jpg", help="extension (format) of the written files")
    # Ours.
    parser.add_argument("--weights_dir", default="weights", help="folder holding the authors' weight files")
    parser.add_argument("--authors", action="store_true", help="keep the authors' bugs (see above)")
    parser.add_argument("--seed", type=int, default=None,
                        help="FaceInpainting: seed of the brush strokes (default 0; unseeded with --authors)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    parser.add_argument("--batch_size", type=int, default=4,
                        help="faces per GPEN call, and per ParseNet call up to 2 on a CPU / 4 on a GPU")
    parser.add_argument("--backend", choices=("auto", "dygraph", "predictor"), default="auto",
                        help="auto: the checked oneDNN predictor on a CPU, dygraph on a GPU")
    parser.add_argument("--dry_run", action="store_true", help="print what would run and the files it needs; stop")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# What the flags ask for.

@dataclass
class GeneratorPlan:
    path: str
    in_size: int
    out_size: int
    channel_multiplier: int
    narrow: float
    widths_from_flags: bool   # FaceEnhancement takes them from the flags; the tasks' are the authors' fixed 2 / 1
    normalized: bool = True   # Segmentation2Face: the authors' is_norm=False


@dataclass
class Plan:
    task: str
    generator: GeneratorPlan
    detector: str = None      # RetinaFace file (FaceEnhancement on photos)
    parser: str = None        # ParseNet file (FaceEnhancement on photos)
    sr: str = None            # Real-ESRNet file (--use_sr)
    sr_scale: int = None
    tile_size: int = None     # None: RealESRNet's default tiles
    notes: tuple = ()

    def files(self):
        return [p for p in (self.generator.path, self.detector, self.parser, self.sr) if p]

    def describe(self):
        g = self.generator
        sizes = f"{g.in_size}" if g.out_size == g.in_size else f"{g.in_size} -> {g.out_size}"
        widths = "" if g.widths_from_flags else " (the authors' fixed values; the file's are used)"
        lines = [f"task {self.task}: GPEN {sizes}, channel_multiplier {g.channel_multiplier}, narrow {g.narrow:g}"
                 f"{widths}{'' if g.normalized else ', inputs in [0, 1] (is_norm False)'}"]
        roles = [("generator", g.path), ("detector", self.detector), ("face parser", self.parser),
                 (f"super-resolution x{self.sr_scale}", self.sr)]
        for role, path in roles:
            if path:
                lines.append(f"  {role:24s} {path}  ({'found' if os.path.isfile(path) else 'MISSING'})")
        if self.sr:
            lines.append(f"  SR tiles: {'whole photo' if self.tile_size == 0 else self.tile_size or 'default'}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def make_plan(args):
    """The networks and files the flags ask for, as the authors' demo.py builds them."""
    notes = []
    folder = args.weights_dir
    if args.task == "FaceEnhancement":
        out_size = args.out_size or args.in_size
        if args.authors and args.out_size not in (None, args.in_size):
            notes.append(f"--out_size {args.out_size} ignored, as the authors' demo does (--authors)")
            out_size = args.in_size
        generator = GeneratorPlan(os.path.join(folder, args.model + ".pth"), args.in_size, out_size,
                                  args.channel_multiplier, args.narrow, widths_from_flags=True)
    else:
        generator = GeneratorPlan(os.path.join(folder, args.model + ".pth"), args.in_size,
                                  args.out_size or TASK_OUT_SIZE.get(args.task, args.in_size), 2, 1.0,
                                  widths_from_flags=False, normalized=args.task != "Segmentation2Face")
    plan = Plan(args.task, generator)
    if args.task == "FaceEnhancement":
        if not args.aligned:
            plan.detector = os.path.join(folder, DETECTOR_FILE)
            plan.parser = os.path.join(folder, PARSER_FILE)
        if args.use_sr:
            plan.sr = os.path.join(folder, f"{args.sr_model}_x{args.sr_scale}.pth")
            plan.sr_scale = args.sr_scale
            plan.tile_size = 0 if args.authors and args.tile_size is None else args.tile_size
    elif args.use_sr or args.aligned or args.alpha != 1:
        notes.append(f"--use_sr, --aligned and --alpha apply to FaceEnhancement only ({args.task} ignores them, "
                     f"as the authors' demo does)")
    plan.notes = tuple(notes)
    return plan


def check_files(plan, weights_dir):
    for path in plan.files():
        if not os.path.isfile(path):
            raise UserError(f"weights file not found: {path} (demo.py looks for the authors' files by name in "
                            f"--weights_dir {weights_dir})")


# ----------------------------------------------------------------------------------------------
# Building and running.

def choose_device(use_cuda):
    import paddle

    if use_cuda:
        if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count():
            paddle.set_device("gpu")
            return "gpu"
        print("--use_cuda: this Paddle has no usable GPU (CPU build or no device); running on the CPU")
    paddle.set_device("cpu")
    return "cpu"


def load_generator(plan, key):
    """The GPEN generator of the plan, its sizes checked (and FaceEnhancement's widths) against the file."""
    from faces.tasks import load_face_generator
    from model.loading import generator_architecture

    g = plan.generator
    generator = load_face_generator(g.path, in_size=g.in_size, out_size=g.out_size, key=key)
    found = generator_architecture(generator.state_dict(), g.path)
    if (found.channel_multiplier, found.narrow) != (g.channel_multiplier, g.narrow):
        if g.widths_from_flags:
            raise UserError(f"{g.path}: holds a generator with channel_multiplier {found.channel_multiplier} and "
                            f"narrow {found.narrow:g}; pass --channel_multiplier {found.channel_multiplier} "
                            f"--narrow {found.narrow:g}")
        print(f"note: {g.path} has channel_multiplier {found.channel_multiplier}, narrow {found.narrow:g} "
              f"(the authors' {plan.task} assumes 2 and 1); using the file's")
    return generator


def build_procedure(plan, args):
    """The task of the plan, ready for images (faces.enhance.TaskProcedure), and a line saying what runs."""
    import numpy as np

    from faces.enhance import FaceEnhancer, TaskProcedure, build_enhancer, sr_of
    from faces.tasks import FaceGenerator

    generator = load_generator(plan, args.key)
    noise_rng = np.random.default_rng() if args.authors else None  # theirs: fresh, unseeded noise
    face_generator = FaceGenerator(generator, backend=args.backend, threads=args.threads, noise_rng=noise_rng)
    if plan.task == "FaceEnhancement" and plan.detector:
        from faces.retinaface import RetinaFaceDetector

        detector = RetinaFaceDetector(plan.detector, backend=args.backend, threads=args.threads)
        parts = build_enhancer(face_generator, plan.parser, detector, sr_weights=plan.sr, sr_scale=plan.sr_scale,
                               sr_tile_size=plan.tile_size, alpha=args.alpha, authors=args.authors,
                               backend=args.backend, threads=args.threads, batch_size=args.batch_size)
        return TaskProcedure(plan.task, face_generator, parts.enhancer), parts.description
    description = f"{plan.task}: GPEN ({face_generator.backend})"
    if plan.task == "FaceEnhancement":  # --aligned: the whole image is the face; no detector, no parser
        sr = None
        if plan.sr:
            from faces.realesrnet import RealESRNet

            sr = sr_of(RealESRNet(plan.sr, scale=plan.sr_scale, tile_size=plan.tile_size, authors_mode=args.authors,
                                  backend=args.backend, threads=args.threads))
            description += f", Real-ESRNet x{plan.sr_scale}"
        enhancer = FaceEnhancer(None, face_generator, None, sr=sr, in_size=face_generator.in_size,
                                out_size=face_generator.out_size, alpha=args.alpha, authors=args.authors)
        return TaskProcedure(plan.task, face_generator, enhancer), description + " on aligned faces"
    strokes_rng = None
    if plan.task == "FaceInpainting":
        seed = args.seed if args.seed is not None or args.authors else 0
        strokes_rng = np.random.RandomState(seed)  # one stream for the folder, as their demo's np.random
        description += f", brush strokes (seed {'none' if seed is None else seed})"
    return TaskProcedure(plan.task, face_generator, strokes_rng=strokes_rng, authors_axes=args.authors), description


def input_files(folder):
    """The images directly inside `folder`, sorted (the authors: glob('*.*g'), sorted)."""
    from utils.image_io import is_image_file

    if not os.path.isdir(folder):
        raise UserError(f"--indir {folder} is not a folder")
    files = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                   if is_image_file(name) and os.path.isfile(os.path.join(folder, name)))
    if not files:
        raise UserError(f"no images (png, jpg, jpeg, bmp, webp) in --indir {folder}")
    return files


def write_results(outdir, name, ext, result, save_face):
    """What the authors' demo writes, by their names: input | output, output, crop | restored face."""
    import cv2
    import numpy as np

    from utils.image_io import write_image

    out = result.image
    before = cv2.resize(result.before, out.shape[:2][::-1])  # theirs: the input resized to the output (bilinear)
    written = [os.path.join(outdir, f"{name}_COMP{ext}"), os.path.join(outdir, f"{name}_GPEN{ext}")]
    write_image(written[0], np.hstack((before, out)))
    write_image(written[1], out)
    if save_face:
        for m, (crop, face) in enumerate(zip(result.crops_in, result.crops_out)):
            written.append(os.path.join(outdir, f"{name}_face{m:02d}{ext}"))
            write_image(written[-1], np.hstack((crop, face)))
    return written


def main(argv=None):
    args = parse_args(argv)
    args.ext = args.ext if args.ext.startswith(".") else "." + args.ext
    plan = make_plan(args)
    if args.dry_run:
        print(plan.describe())
        return 0
    files = input_files(args.indir)
    check_files(plan, args.weights_dir)
    prepare_cpu(args.threads)

    from utils.image_io import read_image

    device = choose_device(args.use_cuda)
    procedure, description = build_procedure(plan, args)
    print(f"{description}; {device.upper()}{' (authors mode)' if args.authors else ''}")
    os.makedirs(args.outdir, exist_ok=True)
    for n, path in enumerate(files):
        name = os.path.splitext(os.path.basename(path))[0]
        try:
            image = read_image(path)
        except UserError as err:  # theirs: print the name and go on
            print(f"{name}: skipped ({err})")
            continue
        started = time.perf_counter()
        result = procedure(image, aligned=args.aligned)
        written = write_results(args.outdir, name, args.ext, result, args.save_face)
        notice = f" ({result.notice})" if result.notice else ""
        print(f"{n} {name}: {result.num_faces} face{'s' if result.num_faces != 1 else ''}, "
              f"{time.perf_counter() - started:.1f} s -> {written[1]}{notice}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
