"""The authors' whole-photo restoration (face_enhancement.py, FaceEnhancement.process), step for step.

Images are RGB uint8 HWC, the project's convention (the authors work on OpenCV's BGR; every step
between their networks acts on each channel alike, so the glue gives the same bytes in either order;
the networks that take BGR are wrapped: `authors_detection`, `parser_of`, `sr_of`). For a photo:

1. with super-resolution: the background is the SR network's output, and the photo is resized
   (bilinear) to that size; faces are detected and cut from the resized photo, not from the SR image;
2. detection (RetinaFace in their code); only faces scoring at least `threshold` (0.9) are kept;
3. the authors' alignment (faces.align.authors_crops): Umeyama on float32 points, bilinear crop;
4. GPEN on the crops, truncated to uint8;
5. FaceParse on the restored faces -> 0/255 mask -> mask_postprocess (26 px border, two Gaussian
   blurs) -> resized to the crop size: the face's paste-back mask;
6. faces whose box is under 100 px on its shorter side get a 3x3 binomial blur, then
   cv2.addWeighted(face, alpha, crop, 1 - alpha);
7. face and mask are warped back over the whole photo (bilinear, black border); a face owns the pixels
   where its mask is larger than every earlier face's (a per-pixel maximum, ties to the earlier face);
8. cv2.convertScaleAbs of the float32 blend background * (1 - mask) + faces * mask.

What differs from their code, none of which changes a result:
* the faces of a photo are handed to GPEN and the parser in batches of `batch_size` (the parser runs
  them together, at most `faces.parsenet.default_batch_size()` at a time: 2 on a CPU; GPEN's runner
  computes one face per call on a CPU, its fastest there, and whole batches on a GPU);
* the mask comparison and the blend are computed only inside the rectangles the warped faces can reach
  (elsewhere the mask is exactly 0 and the blend returns the background exactly);
* each stage is timed (`EnhanceResult.timings`).

Where their behaviour is a bug (`authors=True` keeps it, the default does not):
* the generator with out_size != in_size (GPEN-BFR-2048-style): their code resizes the restored face
  to in_size *after* cv2.addWeighted has mixed it with the in_size crop, which OpenCV refuses (sizes
  differ); the default resizes it before the blur and the mix. Their demo never passes out_size to
  FaceEnhancement, so `authors=True` refuses the combination with one line.
* the detector: their RetinaFaceDetection.detect divides the scores of photos over 1500 px by the
  shrink factor, so weaker faces pass 0.9 there; `authors=True` uses it (`authors_detection`), the
  default RetinaFace's own mode (softmax scores; faces.retinaface);
* the SR network's own quirks (RealESRNet's crop that keeps a padded row for odd sizes at x2, and x1
  tiling that returns nothing) are modes of that network (faces.realesrnet); when it returns nothing,
  this procedure continues without SR, as theirs.

The networks are plain callables, so the procedure can be driven by stand-ins (the tests give it the
fixture's stored detections):
* detector(image) -> (dets (N, 5) [x1, y1, x2, y2, score], landms (N, 10) [x0..x4, y0..y4]), in
  pixels of `image` (RetinaFaceDetection.detect's layout; `authors_detection`, `faces_detection`);
* restorer(faces) -> faces: (N, S, S, 3) uint8 crops -> (N, S', S', 3) uint8 restored faces
  (faces.tasks.FaceGenerator: the authors' FaceGAN.process), called once per `batch_size` faces;
* parser(faces) -> masks: a list of (512, 512) uint8 0/255 masks (faces.parsenet.FaceParse.process_batch);
* sr(image) -> image or None: the super-resolved photo (faces.realesrnet.RealESRNet.process).
`build_enhancer` makes them from weight files.
"""
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from faces.align import authors_crops, points_from_retinaface
from faces.blend import SMALL_FACE, soften_small_face

SCORE_THRESHOLD = 0.9  # FaceEnhancement.threshold: the smallest detector score a face must have
STAGES = ("sr", "detect", "align", "gpen", "parse", "paste")


@dataclass
class EnhanceResult:
    """What `FaceEnhancer.process` produced; coordinates are pixels of the image the faces were cut
    from (the photo, or the photo resized to the SR size)."""

    image: np.ndarray            # the restored photo, uint8 RGB (the SR size with SR)
    orig_faces: np.ndarray       # (N, S, S, 3) the aligned crops given to GPEN
    enhanced_faces: np.ndarray   # (N, S', S', 3) what GPEN returned (before blur and mixing)
    dets: np.ndarray = None      # (N, 5) the kept detections [x1, y1, x2, y2, score]
    landmarks: np.ndarray = None  # (N, 5, 2)
    inverses: np.ndarray = None  # (N, 2, 3) crop -> image matrices
    masks: np.ndarray = None     # (N, S, S) float32 paste-back masks in crop space (before warping)
    parse_masks: list = None     # the parser's (512, 512) uint8 masks
    timings: dict = field(default_factory=dict)  # seconds per stage (STAGES)
    notice: str = ""             # for people: no face found, SR failed, ...
    before: np.ndarray = None    # the input as the task saw it (inpainting: with the missing region white)

    @property
    def num_faces(self):
        return len(self.orig_faces)

    # faces.pipeline.write_outputs' names: the face pairs side by side at the restored faces' size
    @property
    def crops_in(self):
        return [face if face.shape == out.shape else cv2.resize(face, out.shape[:2][::-1])
                for face, out in zip(self.orig_faces, self.enhanced_faces)]

    @property
    def crops_out(self):
        return list(self.enhanced_faces)


# ----------------------------------------------------------------------------------------------
# The stages, each a pure function of the previous stage's arrays (the tests run each one on the
# authors' stored inputs).

def kept_faces(dets, landms, threshold=SCORE_THRESHOLD):
    """Indices of the detections scoring at least `threshold`, in the detector's order."""
    scores = np.asarray(dets, np.float32).reshape(-1, 5)[:, 4]
    return [i for i in range(len(scores)) if not scores[i] < threshold]


def is_small(det, small_face=SMALL_FACE):
    """The authors' small-face rule: the box's shorter side (height or width) under `small_face` px."""
    return min(det[3] - det[1], det[2] - det[0]) < small_face


def paste_masks(parse_masks, size):
    """Crop-space paste-back masks (N, size, size) float32 from FaceParse's (512, 512) 0/255 masks:
    mask_postprocess(mask / 255.) resized (bilinear) to the crop size."""
    from faces.parsenet import soft_mask

    out = np.empty((len(parse_masks), size, size), np.float32)
    for i, mask in enumerate(parse_masks):
        out[i] = cv2.resize(soft_mask(mask), (size, size))
    return out


def mix_faces(restored, crops, small, alpha):
    """What is warped back for each face: the small-face blur where `small[i]`, then
    cv2.addWeighted(face, alpha, crop, 1 - alpha, 0) (uint8, rounded)."""
    out = np.empty_like(restored)
    for i, face in enumerate(restored):
        if small[i]:
            face = soften_small_face(face)  # the authors' kernel, OpenCV's default border
        out[i] = cv2.addWeighted(face, alpha, crops[i], 1.0 - alpha, 0.0)
    return out


def reach(inverse, size, width, height, margin=2):
    """(x0, y0, x1, y1): the image rectangle outside which a bilinear warp of a size x size crop by
    `inverse` (crop -> image) is exactly 0. A pixel is touched when its source point lies within one
    pixel of the crop, i.e. in (-1, size); `margin` covers warpAffine's fixed-point coordinates."""
    corners = np.array([[-1, -1], [size, -1], [size, size], [-1, size]], np.float64)
    mapped = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.floor(mapped.min(0)).astype(int) - margin
    x1, y1 = np.ceil(mapped.max(0)).astype(int) + margin + 1
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def paste_back(base, faces, masks, inverses):
    """The authors' paste-back: each face and its mask warped over the whole image (bilinear, black
    border), the face with the larger mask owning each pixel (ties to the earlier face), then
    cv2.convertScaleAbs(base * (1 - mask) + faces * mask) in float32. base: uint8 HWC (not modified).

    Bit-equal to theirs; the comparison and the blend are done only where a warped face can reach."""
    height, width = base.shape[:2]
    size = faces.shape[1]
    full_mask = np.zeros((height, width), np.float32)
    full_img = np.zeros(base.shape, np.uint8)
    out = base.copy()
    regions = []
    for face, mask, inverse in zip(faces, masks, inverses):
        # Warps over the whole image, as theirs: a warp into a sub-rectangle shifts the matrix, which
        # changes warpAffine's fixed-point rounding of the source coordinates.
        warped_mask = cv2.warpAffine(mask, inverse, (width, height), flags=cv2.INTER_LINEAR)
        warped_face = cv2.warpAffine(face, inverse, (width, height), flags=cv2.INTER_LINEAR)
        x0, y0, x1, y1 = reach(inverse, size, width, height)
        if x1 <= x0 or y1 <= y0:
            continue
        regions.append((x0, y0, x1, y1))
        window = np.s_[y0:y1, x0:x1]
        owns = (warped_mask[window] - full_mask[window]) > 0  # their test, kept as written
        full_mask[window][owns] = warped_mask[window][owns]
        full_img[window][owns] = warped_face[window][owns]
    for x0, y0, x1, y1 in _disjoint(regions):
        window = np.s_[y0:y1, x0:x1]
        weight = full_mask[window][:, :, None]
        out[window] = cv2.convertScaleAbs(base[window] * (1 - weight) + full_img[window] * weight)
    return out


def _disjoint(regions):
    """Rectangles covering the union of `regions` without overlapping: merged where they touch, so
    each pixel is blended once."""
    merged = [list(r) for r in regions]
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    merged[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


# ----------------------------------------------------------------------------------------------
# The procedure.

class FaceEnhancer:
    """The authors' FaceEnhancement on any detector / restorer / parser / SR callables (module doc).

    in_size: the crop side (the generator's input); out_size: the generator's output side (None: the
    same). alpha: 1 pastes the restored faces, 0 the crops. threshold: smallest detector score kept.
    sr: None for no super-resolution. batch_size: faces per restorer call. authors: keep the authors'
    behaviour where it is a bug (module doc). threshold None keeps every detection (for detectors whose
    scores are not RetinaFace's).
    """

    def __init__(self, detector, restorer, parser, sr=None, in_size=512, out_size=None, alpha=1.0,
                 threshold=SCORE_THRESHOLD, small_face=SMALL_FACE, batch_size=4, authors=False):
        from utils.errors import UserError

        self.detector, self.restorer, self.parser, self.sr = detector, restorer, parser, sr
        self.in_size = int(in_size)
        self.out_size = self.in_size if out_size is None else int(out_size)
        if authors and self.out_size != self.in_size:
            raise UserError(f"the authors' FaceEnhancement cannot paste a {self.out_size} px generator output "
                            f"onto {self.in_size} px crops (their demo never builds one); drop the authors' mode "
                            f"to resize the restored faces to the crop size")
        if not 0.0 <= alpha <= 1.0:
            raise UserError(f"--alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.threshold = threshold
        self.small_face = small_face
        self.batch_size = max(1, int(batch_size))
        self.authors = authors

    def restore_crops(self, crops):
        """GPEN on aligned crops (N, S, S, 3) uint8: one restorer call per `batch_size` faces."""
        parts = []
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start:start + self.batch_size]
            out = np.asarray(self.restorer(batch))
            if out.dtype != np.uint8 or out.ndim != 4 or len(out) != len(batch) or out.shape[-1] != 3:
                raise ValueError(f"the restorer must return uint8 (N, S, S, 3) faces, got {out.dtype} {out.shape}")
            parts.append(out)
        return np.concatenate(parts)

    def process(self, image, aligned=False):
        """Restore `image` (uint8 HWC RGB): every face of a photo, or the whole image when `aligned`
        (then resized to in_size, restored, and super-resolved with SR, as theirs). Returns an
        EnhanceResult."""
        image = np.ascontiguousarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"FaceEnhancer expects a uint8 HxWx3 RGB image, got {image.dtype} {image.shape}")
        timings = dict.fromkeys(STAGES, 0.0)
        clock = time.perf_counter
        if aligned:
            return self._process_aligned(image, timings)

        notice = ""
        base = image
        if self.sr is not None:
            start = clock()
            upscaled = self.sr(image)
            if upscaled is None:
                notice = "super-resolution failed: the photo is restored at its own size"
            else:
                base = upscaled
                image = cv2.resize(image, upscaled.shape[:2][::-1])  # faces come from the resized photo
            timings["sr"] = clock() - start

        start = clock()
        dets, landms = self.detector(image)
        dets = np.asarray(dets, np.float32).reshape(-1, 5)
        landms = np.asarray(landms, np.float32).reshape(-1, 10)
        keep = kept_faces(dets, landms, self.threshold) if self.threshold is not None else list(range(len(dets)))
        dets, landms = dets[keep], landms[keep]
        timings["detect"] = clock() - start

        start = clock()
        landmarks = np.stack([points_from_retinaface(row) for row in landms]) if len(keep) else \
            np.zeros((0, 5, 2), np.float32)
        crops, inverses = authors_crops(image, landmarks, self.in_size)
        timings["align"] = clock() - start

        if not len(keep):
            empty = np.zeros((0, self.out_size, self.out_size, 3), np.uint8)
            notice = notice or "no face found: the photo is returned unchanged"
            return EnhanceResult(base.copy(), crops, empty, dets, landmarks, inverses,
                                 np.zeros((0, self.in_size, self.in_size), np.float32), [], timings, notice)

        start = clock()
        restored = self.restore_crops(crops)
        timings["gpen"] = clock() - start

        start = clock()
        parse_masks = list(self.parser(restored))
        timings["parse"] = clock() - start

        start = clock()
        masks = paste_masks(parse_masks, self.in_size)
        faces = restored
        if self.out_size != self.in_size:  # only without the authors' mode (see the constructor)
            faces = np.stack([cv2.resize(face, (self.in_size, self.in_size)) for face in faces])
        faces = mix_faces(faces, crops, [is_small(det, self.small_face) for det in dets], self.alpha)
        photo = paste_back(base, faces, masks, inverses)
        timings["paste"] = clock() - start
        return EnhanceResult(photo, crops, restored, dets, landmarks, inverses, masks, parse_masks, timings, notice)

    def _process_aligned(self, image, timings):
        clock = time.perf_counter
        start = clock()
        crop = cv2.resize(image, (self.in_size, self.in_size))  # FaceGAN.process resizes (bilinear)
        restored = self.restore_crops(crop[None])
        timings["gpen"] = clock() - start
        photo, notice = restored[0], ""
        if self.sr is not None:
            start = clock()
            upscaled = self.sr(photo)
            timings["sr"] = clock() - start
            if upscaled is None:
                notice = "super-resolution failed: the restored face is returned at the generator's size"
            else:
                photo = upscaled
        height, width = image.shape[:2]
        box = np.array([[0, 0, width, height, 1.0]], np.float32)
        return EnhanceResult(photo, image[None], restored, box, np.zeros((1, 5, 2), np.float32),
                             np.zeros((1, 2, 3)), timings=timings, notice=notice)


# ----------------------------------------------------------------------------------------------
# The networks around the procedure.

def _flip(image):
    """RGB <-> BGR (a contiguous copy: OpenCV refuses negative strides)."""
    return np.ascontiguousarray(np.asarray(image)[..., ::-1])


def authors_detection(retinaface):
    """The detector of the authors' FaceEnhancement: RetinaFaceDetection.detect on the BGR photo
    (faces.retinaface.RetinaFaceDetector.detect_authors, its quirks included: after the shrink of
    photos over 1500 px the scores are divided by the shrink factor too, so more faces pass 0.9)."""
    def detect(image):
        return retinaface.detect_authors(_flip(image), confidence_threshold=SCORE_THRESHOLD)

    return detect


def faces_detection(detector):
    """Any faces.detect detector (RGB -> Faces) in the authors' (dets, landms) layout."""
    def detect(image):
        faces = detector(image)
        dets = np.concatenate([faces.boxes, faces.scores[:, None]], axis=1).astype(np.float32)
        landms = np.asarray(faces.landmarks, np.float32).transpose(0, 2, 1).reshape(-1, 10)
        return dets, landms

    return detect


def parser_of(face_parse):
    """RGB faces -> FaceParse masks (FaceParse takes BGR, as the authors')."""
    def parse(faces):
        return face_parse.process_batch([_flip(face) for face in faces])

    return parse


def sr_of(realesrnet):
    """RGB photo -> super-resolved RGB photo or None (RealESRNet takes and returns BGR)."""
    def upscale(image):
        out = realesrnet.process(_flip(image))
        return None if out is None else _flip(out)

    return upscale


@dataclass
class EnhancerParts:
    """What `build_enhancer` built, for messages: which network runs how."""

    enhancer: FaceEnhancer
    face_generator: object       # faces.tasks.FaceGenerator
    description: str


def build_enhancer(face_generator, parsing_weights, detector, sr_weights=None, sr_scale=None, sr_tile_size=None,
                   alpha=1.0, authors=False, backend="auto", threads=0, batch_size=4):
    """The authors' FaceEnhancement from weights, taking plain values.

    face_generator: a faces.tasks.FaceGenerator (their FaceGAN.process; `function_face_generator` for
    an exported predictor). parsing_weights: ParseNet-latest.pth (or a ParseNet). detector: a
    faces.retinaface.RetinaFaceDetector (authors: its detect_authors; default: its detect, whose scores
    are the softmax probabilities) or any faces.detect detector (then every face it finds is kept).
    sr_weights: realesrnet_x*.pth for `--use_sr` (None: no SR); sr_scale: the scale asked for (checked
    against the file; None: the file's); sr_tile_size: None (RealESRNet's default tiles), 0 (whole
    photo) or a side. Returns EnhancerParts (the enhancer and a line saying what runs).
    """
    from faces.parsenet import FaceParse, default_batch_size
    from faces.realesrnet import RealESRNet
    from faces.retinaface import RetinaFaceDetector

    sr, sr_text = None, "no SR"
    if sr_weights is not None:  # first: its scale check is quicker than the parser's export
        realesrnet = RealESRNet(sr_weights, scale=sr_scale, tile_size=sr_tile_size, authors_mode=authors,
                                backend=backend, threads=threads)
        sr = sr_of(realesrnet)
        tiles = "whole photo" if realesrnet.tile_size == 0 else f"{realesrnet.tile_size} px tiles"
        sr_text = f"Real-ESRNet x{realesrnet.scale} ({tiles}, {realesrnet.backend})"
    # batch_size bounds the parser's batches too; its own default is smaller on a CPU (memory traffic).
    parse = FaceParse(parsing_weights, backend=backend, threads=threads,
                      batch_size=min(batch_size, default_batch_size()))
    is_retinaface = isinstance(detector, RetinaFaceDetector)
    if is_retinaface and authors:
        detect, threshold = authors_detection(detector), SCORE_THRESHOLD
    elif is_retinaface:
        detect, threshold = faces_detection(detector), SCORE_THRESHOLD
    else:
        detect, threshold = faces_detection(detector), None
    enhancer = FaceEnhancer(detect, face_generator, parser_of(parse), sr=sr, in_size=face_generator.in_size,
                            out_size=face_generator.out_size, alpha=alpha, threshold=threshold,
                            batch_size=batch_size, authors=authors)
    detector_text = getattr(detector, "name", type(detector).__name__)
    if is_retinaface:
        detector_text += " (authors' detect)" if authors else " (softmax scores >= 0.9)"
    sizes = f"{face_generator.in_size}" + (f"->{face_generator.out_size}"
                                           if face_generator.out_size != face_generator.in_size else "")
    description = (f"the authors' FaceEnhancement{' (authors mode)' if authors else ''}: {detector_text} "
                   f"detector, GPEN {sizes} ({face_generator.backend}), ParseNet mask ({parse.backend}), {sr_text}")
    return EnhancerParts(enhancer, face_generator, description)


# ----------------------------------------------------------------------------------------------
# The authors' four tasks, one image at a time (demo.py, and predict.py / infer.py through faces.files).

TASKS = ("FaceEnhancement", "FaceColorization", "FaceInpainting", "Segmentation2Face")


def function_face_generator(run, in_size, out_size, what="GPEN generator"):
    """A faces.tasks.FaceGenerator (the authors' FaceGAN.process) around a network function
    run(x) -> y, float32 NCHW RGB (an exported predictor, deploy.runner.GeneratorRunner, ...)."""
    from deploy.checked import CheckedNetwork
    from faces.tasks import FaceGenerator

    face_generator = FaceGenerator.__new__(FaceGenerator)  # its conversions, our network
    face_generator.in_size, face_generator.out_size = int(in_size), int(out_size)
    face_generator._network = run if isinstance(run, CheckedNetwork) else CheckedNetwork(None, run, what)
    return face_generator


class TaskProcedure:
    """One image (RGB uint8) -> EnhanceResult, for one of the authors' tasks (TASKS).

    face_generator: a faces.tasks.FaceGenerator. enhancer: a FaceEnhancer (FaceEnhancement only).
    Inpainting: `mask` (a mask image, white = missing, resized to each image) for every image, else the
    authors' brush strokes drawn from `strokes_rng` (a numpy RandomState, one stream for a folder, as their demo);
    authors_axes: their swapped stroke axes (faces.tasks.brush_strokes).
    """

    def __init__(self, task, face_generator=None, enhancer=None, mask=None, strokes_rng=None, authors_axes=False):
        from utils.errors import UserError

        if task not in TASKS:
            raise UserError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if task == "FaceEnhancement" and enhancer is None:
            raise ValueError("FaceEnhancement needs a FaceEnhancer")
        self.task, self.face_generator, self.enhancer = task, face_generator, enhancer
        self.mask, self.strokes_rng, self.authors_axes = mask, strokes_rng, authors_axes

    def __call__(self, image, aligned=False):
        from faces.tasks import (brush_strokes, colorize, inpaint, missing_from_mask_image, paint_missing,
                                 segmentation_to_face)

        if self.task == "FaceEnhancement":
            result = self.enhancer.process(image, aligned=aligned)
            result.before = image
            return result
        start = time.perf_counter()
        if self.task == "FaceColorization":
            out = colorize(self.face_generator, image)
        elif self.task == "FaceInpainting":
            if self.mask is not None:
                missing = missing_from_mask_image(self.mask, image.shape)
            else:
                missing = brush_strokes(*image.shape[:2], self.strokes_rng, authors_axes=self.authors_axes)
            image = paint_missing(image, missing)
            out = inpaint(self.face_generator, image)
        else:
            out = segmentation_to_face(self.face_generator, image)
        timings = dict.fromkeys(STAGES, 0.0)
        timings["gpen"] = time.perf_counter() - start
        return EnhanceResult(out, image[None], out[None], timings=timings, before=image)


def files_procedure(run, size, task="FaceEnhancement", parsing_weights=None, detector=None, sr_weights=None,
                    sr_scale=None, alpha=1.0, batch_size=4, mask=None, seed=0, threads=0):
    """The authors' procedure for predict.py / infer.py (faces.files.restore_files), or None when the
    project's own photo pipeline runs (FaceEnhancement without `parsing_weights`).

    run: the generator as a network function (float32 NCHW RGB in [-1, 1], e.g. the checked predictor);
    size: its input and output side. detector: a built faces.detect detector (photos). mask: a mask
    image (RGB uint8, white = missing) for inpainting, else brush strokes from `seed`.
    Returns (TaskProcedure, a line saying which pipeline runs).
    """
    if task == "FaceEnhancement" and parsing_weights is None:
        if sr_weights is not None:
            from utils.errors import UserError

            raise UserError("--sr_weights needs the authors' FaceEnhancement: pass --parsing_weights "
                            "ParseNet-latest.pth too (or --upscale for a plain resize)")
        return None
    import numpy as np

    face_generator = function_face_generator(run, size, size)
    if task == "FaceEnhancement":
        parts = build_enhancer(face_generator, parsing_weights, detector, sr_weights=sr_weights, sr_scale=sr_scale,
                               alpha=alpha, threads=threads, batch_size=batch_size)
        return TaskProcedure(task, face_generator, parts.enhancer), parts.description
    strokes = None if mask is not None else np.random.RandomState(seed)
    description = f"the authors' {task}" + ("" if task != "FaceInpainting" else
                                            ", mask image" if mask is not None else f", brush strokes (seed {seed})")
    return TaskProcedure(task, face_generator, mask=mask, strokes_rng=strokes), description
