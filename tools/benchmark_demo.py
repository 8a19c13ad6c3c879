"""Whole-photo speed of the authors' FaceEnhancement: ours beside theirs, on the same machine, in one run.

    python tools/benchmark_demo.py                              # Solvay 1927, without SR and with --sr_scale 2
    python tools/benchmark_demo.py --cases nosr --max_faces 4   # a rough first look

Both sides run GPEN-BFR-512 + RetinaFace-R50 + ParseNet-latest (+ realesrnet_x2), with random weights of
the real architectures written once by the authors' constructors into --weights_dir (speed does not
depend on the values; both sides load the same files). Theirs runs in the PyTorch venv from their
checkout (--torch_python, --upstream), eager mode on the CPU; ours through the checked oneDNN predictors.

Random detector weights find no faces, so both sides get the same faces: YuNet's detections on the
photo (--yunet), handed over after the real RetinaFace has run on the image (its time is counted). With
SR the detector sees the photo resized to the SR size and the faces are scaled with it, as in the
authors' fixtures. Before the timed runs each side restores a small crop of the photo once (ours:
exports and checks each network; theirs: first-call overheads); the set-up is reported separately.

Stages: sr (Real-ESRNet + the photo resize), detect, align, gpen, parse (the network and its mask),
paste (mask_postprocess, the warps back, the compositing, the blend). Runs alternate between the two
sides; the machine's load (`uptime`) is printed before each run, because this CPU is shared.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from utils.runtime import prepare_cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STAGES = ("sr", "detect", "align", "gpen", "parse", "paste")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
WEIGHT_FILES = ("GPEN-BFR-512.pth", "RetinaFace-R50.pth", "ParseNet-latest.pth", "realesrnet_x2.pth")

# Runs inside the PyTorch venv, in the authors' checkout. Writes the random weights (mode 'weights') or
# times FaceEnhancement.process (mode 'time'), printing one JSON line.
AUTHORS_DRIVER = r'''
import json, os, sys, time, types
request = json.loads(sys.argv[1])
# align_faces.py imports skimage without using it; a stand-in keeps the venv small.
stand_in = types.ModuleType("skimage"); stand_in.transform = types.ModuleType("skimage.transform")
sys.modules.update({"skimage": stand_in, "skimage.transform": stand_in.transform})
sys.path.insert(0, os.getcwd())
import __init_paths  # noqa: F401  (their path set-up)
import numpy as np, torch
torch.set_num_threads(request["threads"])
folder = os.path.join(request["base_dir"], "weights")
if request["mode"] == "weights":
    from data import cfg_re50
    from facemodels.retinaface import RetinaFace
    from gpen_model import FullGenerator
    from parse_model import ParseNet
    from rrdbnet_arch import RRDBNet
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)
    torch.save(FullGenerator(512, 512, 8, 2, narrow=1, device="cpu").state_dict(),
               os.path.join(folder, "GPEN-BFR-512.pth"))
    torch.save(RetinaFace(cfg=cfg_re50, phase="test").state_dict(), os.path.join(folder, "RetinaFace-R50.pth"))
    torch.save(ParseNet(512, 512, 32, 64, 19, norm_type="bn", relu_type="LeakyReLU", ch_range=[32, 256]).state_dict(),
               os.path.join(folder, "ParseNet-latest.pth"))
    torch.save({"params_ema": RRDBNet(3, 3, num_feat=32, num_block=23, num_grow_ch=32, scale=2).state_dict()},
               os.path.join(folder, "realesrnet_x2.pth"))
    print(json.dumps({"written": sorted(os.listdir(folder))}))
    sys.exit(0)

import cv2
import face_enhancement
from face_enhancement import FaceEnhancement

faces = np.load(request["faces"])
args = types.SimpleNamespace(channel_multiplier=2, narrow=1, key=None, sr_model="realesrnet", sr_scale=2,
                             tile_size=0, alpha=1)
started = time.perf_counter()
fe = FaceEnhancement(args, base_dir=request["base_dir"], in_size=512, model="GPEN-BFR-512",
                     use_sr=request["use_sr"], device="cpu")
setup = time.perf_counter() - started
seconds = dict.fromkeys(["sr", "detect", "align", "gpen", "parse"], 0.0)

def timed(stage, function):
    def run(*a, **k):
        start = time.perf_counter()
        try:
            return function(*a, **k)
        finally:
            seconds[stage] += time.perf_counter() - start
    return run

class GivenFaces:
    """Their RetinaFace runs; the faces handed on are the given ones, scaled to the image it saw."""
    def __init__(self, real, dets, landms, shape):
        self.real, self.dets, self.landms, self.shape = real, dets, landms, shape
    def detect(self, img):
        self.real.detect(img)
        sx, sy = img.shape[1] / self.shape[1], img.shape[0] / self.shape[0]
        return (self.dets * np.float32([sx, sy, sx, sy, 1]), self.landms * np.float32([sx] * 5 + [sy] * 5))

fe.facedetector.detect = timed("detect", fe.facedetector.detect)
fe.facegan.process = timed("gpen", fe.facegan.process)
fe.faceparser.process = timed("parse", fe.faceparser.process)
fe.srmodel.process = timed("sr", fe.srmodel.process)
face_enhancement.warp_and_crop_face = timed("align", face_enhancement.warp_and_crop_face)
real = fe.facedetector
results = []
for name in ("warmup", "photo"):
    img = cv2.imread(request[name], cv2.IMREAD_COLOR)
    fe.facedetector = GivenFaces(real, faces[name + "_dets"], faces[name + "_landms"], img.shape)
    seconds.update(dict.fromkeys(seconds, 0.0))
    start = time.perf_counter()
    out, orig_faces, _ = fe.process(img)
    total = time.perf_counter() - start
    stages = dict(seconds)
    stages["paste"] = total - sum(stages.values())
    results.append({"total": total, "stages": stages, "faces": len(orig_faces), "shape": list(out.shape)})
print(json.dumps({"setup": setup, "warmup": results[0], "run": results[1], "torch": torch.__version__}))
'''


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--photo", default=os.path.join(SHARED, "data", "wild", "Solvay_conference_1927.png"))
    parser.add_argument("--yunet", default=os.path.join(SHARED, "weights", "yunet", "yunet_s_640_640.onnx"))
    parser.add_argument("--cases", nargs="+", choices=("nosr", "sr2"), default=["nosr", "sr2"])
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each side per case (alternating)")
    parser.add_argument("--max_faces", type=int, default=0, help="use only the N largest faces (0: all)")
    parser.add_argument("--batch_size", type=int, default=4,
                        help="our faces per GPEN call (ParseNet: up to 2 on a CPU)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sides", nargs="+", choices=("authors", "ours"), default=["authors", "ours"])
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "output", "benchmark_demo"),
                        help="random weights (weights/), the faces handed to both sides, the results")
    parser.add_argument("--torch_python", default="/work/venvs/torch/bin/python")
    parser.add_argument("--upstream", default="/work/upstream/GPEN", help="the authors' checkout")
    return parser.parse_args(argv)


def load_average():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def run_authors(args, request):
    request = dict(request, threads=args.threads, base_dir=os.path.abspath(args.work_dir))
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([args.torch_python, "-c", AUTHORS_DRIVER, json.dumps(request)], cwd=args.upstream,
                          env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        sys.exit(f"the authors' code failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def given_faces(args, photo_bgr):
    """YuNet's faces on the photo (scores set to 1 so all pass the authors' 0.9), the largest
    `max_faces`, in their (dets, landms) layout; and a crop holding the largest face, for the warm-up."""
    import numpy as np

    from faces.yunet import YuNetDetector

    faces = YuNetDetector(args.yunet)(np.ascontiguousarray(photo_bgr[:, :, ::-1]))
    order = np.argsort(-faces.sizes, kind="stable")
    if args.max_faces:
        order = np.sort(order[:args.max_faces])
    dets = np.concatenate([faces.boxes[order], np.ones((len(order), 1), np.float32)], axis=1).astype(np.float32)
    landms = faces.landmarks[order].transpose(0, 2, 1).reshape(-1, 10).astype(np.float32)
    big = int(np.argmax(dets[:, 2] - dets[:, 0]))
    x1, y1, x2, y2 = dets[big, :4]
    side = 2 * max(x2 - x1, y2 - y1)
    left, top = int(max(0, (x1 + x2 - side) / 2)), int(max(0, (y1 + y2 - side) / 2))
    crop = photo_bgr[top:top + int(side), left:left + int(side)]
    shift = np.float32([left, top, left, top, 0])
    warm_dets = dets[big:big + 1] - shift
    warm_landms = landms[big:big + 1] - np.float32([left] * 5 + [top] * 5)
    return dets, landms, crop, warm_dets, warm_landms


class GivenFaces:
    """Our RetinaFace runs on the image (our pipeline mode); the faces handed on are the given ones,
    scaled to that image."""

    def __init__(self, detector, dets, landms, shape):
        self.detector, self.dets, self.landms, self.shape = detector, dets, landms, shape

    def __call__(self, image):
        import numpy as np

        self.detector(image)
        sx, sy = image.shape[1] / self.shape[1], image.shape[0] / self.shape[0]
        return self.dets * np.float32([sx, sy, sx, sy, 1]), self.landms * np.float32([sx] * 5 + [sy] * 5)


def build_ours(args, use_sr):
    from faces.enhance import build_enhancer
    from faces.retinaface import RetinaFaceDetector
    from faces.tasks import FaceGenerator, load_face_generator

    folder = os.path.join(args.work_dir, "weights")
    started = time.perf_counter()
    generator = FaceGenerator(load_face_generator(os.path.join(folder, "GPEN-BFR-512.pth"), in_size=512),
                              threads=args.threads)
    detector = RetinaFaceDetector(os.path.join(folder, "RetinaFace-R50.pth"), threads=args.threads)
    parts = build_enhancer(generator, os.path.join(folder, "ParseNet-latest.pth"), detector,
                           sr_weights=os.path.join(folder, "realesrnet_x2.pth") if use_sr else None, sr_scale=2,
                           threads=args.threads, batch_size=args.batch_size)
    return parts.enhancer, detector, time.perf_counter() - started


def run_ours(enhancer, detector, images):
    """One result per (image, dets, landms), like the authors' driver's."""
    import numpy as np

    results = []
    for image, dets, landms in images:
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        enhancer.detector = GivenFaces(detector, dets, landms, image.shape)
        start = time.perf_counter()
        result = enhancer.process(rgb)
        results.append({"total": time.perf_counter() - start, "stages": dict(result.timings),
                        "faces": result.num_faces, "shape": list(result.image.shape)})
    return results


def table(case, authors, ours):
    lines = [f"\n{case}: {ours['faces'] if ours else authors['faces']} faces",
             f"| stage | authors (PyTorch eager) | ours (oneDNN predictors) | ours / authors |", "|---|---|---|---|"]
    for stage in STAGES + ("total",):
        a = authors["total"] if stage == "total" and authors else (authors["stages"][stage] if authors else None)
        o = ours["total"] if stage == "total" and ours else (ours["stages"][stage] if ours else None)
        ratio = f"{o / a:.2f}" if a and o is not None and a > 1e-3 else "-"
        fmt = lambda v: "-" if v is None else f"{v:.2f} s"  # noqa: E731
        lines.append(f"| {stage} | {fmt(a)} | {fmt(o)} | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    args.work_dir = os.path.abspath(args.work_dir)  # the authors' side runs in their checkout
    prepare_cpu(args.threads)
    import cv2
    import numpy as np

    os.makedirs(args.work_dir, exist_ok=True)
    folder = os.path.join(args.work_dir, "weights")
    if not all(os.path.isfile(os.path.join(folder, name)) for name in WEIGHT_FILES):
        print("writing random weights of the real architectures with the authors' constructors ...")
        print(run_authors(args, {"mode": "weights"}))
    photo = cv2.imread(args.photo, cv2.IMREAD_COLOR)
    if photo is None:
        sys.exit(f"cannot read {args.photo}")
    faces = given_faces(args, photo)
    crop_path = os.path.join(args.work_dir, "warmup.png")
    cv2.imwrite(crop_path, faces[2])
    faces_path = os.path.join(args.work_dir, "faces.npz")
    np.savez(faces_path, photo_dets=faces[0], photo_landms=faces[1], warmup_dets=faces[3], warmup_landms=faces[4])
    print(f"{args.photo}: {photo.shape[1]}x{photo.shape[0]}, {len(faces[0])} faces given to both sides; "
          f"{os.cpu_count()} CPUs, {args.threads} threads; load {load_average()}")

    report = {"photo": args.photo, "faces": len(faces[0]), "threads": args.threads, "batch_size": args.batch_size,
              "cases": {}}
    for case in args.cases:
        use_sr = case == "sr2"
        ours_parts, runs = None, {"authors": [], "ours": []}
        for repeat in range(args.repeats):
            for side in args.sides:
                load = load_average()
                if side == "authors":
                    result = run_authors(args, {"mode": "time", "use_sr": use_sr, "photo": args.photo,
                                                "warmup": crop_path, "faces": faces_path})
                    timed, setup = result["run"], result["setup"]
                else:
                    if ours_parts is None:  # built, exported and checked on the warm-up crop once per case
                        enhancer, detector, setup = build_ours(args, use_sr)
                        setup += run_ours(enhancer, detector, [(faces[2], faces[3], faces[4])])[0]["total"]
                        ours_parts = enhancer, detector, setup
                    enhancer, detector, setup = ours_parts
                    (timed,) = run_ours(enhancer, detector, [(photo, faces[0], faces[1])])
                timed = dict(timed, setup=setup, load_before=load)
                runs[side].append(timed)
                print(f"{case} {side} run {repeat + 1}: {timed['total']:.1f} s ({timed['faces']} faces, set-up "
                      f"{setup:.1f} s; load before {load})", flush=True)
        best = {side: min(r, key=lambda t: t["total"]) if r else None for side, r in runs.items()}
        print(table(case, best["authors"], best["ours"]))
        report["cases"][case] = runs
    report["load_after"] = load_average()
    path = os.path.join(args.work_dir, "benchmark_demo.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nload after: {report['load_after']}; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
