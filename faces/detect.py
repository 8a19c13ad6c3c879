"""Choosing the face detector the command line names; their common result type and base class are in
faces/detection.py.

Three detectors: MTCNN (Paddle, weights from the `mtcnn` package: works with no model file), YuNet
(OpenCV's FaceDetectorYN with an .onnx file the user passes) and RetinaFace (Paddle, the GPEN authors'
RetinaFace-R50.pth or a mobilenet0.25_Final.pth the user passes; faces/retinaface.py). Measured on the
shared wild photos (64 faces), YuNet finds all of them in a quarter of MTCNN's time while MTCNN finds 62,
so the default, 'auto', is YuNet when an .onnx file is given, RetinaFace for a .pth file and MTCNN otherwise.
"""
from faces.detection import DEFAULT_MAX_SIDE
from utils.errors import UserError

DETECTORS = ("auto", "mtcnn", "yunet", "retinaface")
DEFAULT_DETECTOR = "auto"


def build_detector(name=DEFAULT_DETECTOR, model_path=None, threshold=None, min_face=20, max_faces=0,
                   max_side=DEFAULT_MAX_SIDE):
    """The face detector the CLI options name.

    name: 'mtcnn' (weights from the installed `mtcnn` package, or from the folder `model_path` holding
    pnet.lz4/rnet.lz4/onet.lz4), 'yunet' (`model_path`: a YuNet .onnx file, required), 'retinaface'
    (`model_path`: a RetinaFace .pth, required) or 'auto' (default: 'yunet' when `model_path` is an .onnx
    file, 'retinaface' for a .pth file, else 'mtcnn').
    """
    common = dict(threshold=threshold, min_face=min_face, max_faces=max_faces, max_side=max_side)
    if name == "auto":
        suffix = str(model_path or "").lower()
        name = "yunet" if suffix.endswith(".onnx") else "retinaface" if suffix.endswith(".pth") else "mtcnn"
    if name == "mtcnn":
        from faces.mtcnn import MTCNNDetector  # imports paddle: only when this detector is wanted

        return MTCNNDetector(weight_dir=model_path, **common)
    if name == "yunet":
        from faces.yunet import YuNetDetector

        if not model_path:
            raise UserError("--detector yunet needs --detector_model PATH/TO/yunet.onnx "
                            "(OpenCV's face_detection_yunet model)")
        return YuNetDetector(model_path, **common)
    if name == "retinaface":
        from faces.retinaface import RetinaFaceDetector

        if not model_path:
            raise UserError("--detector retinaface needs --detector_model PATH/TO/RetinaFace-R50.pth "
                            "(the GPEN authors' weights, or a RetinaFace mobilenet0.25_Final.pth)")
        return RetinaFaceDetector(model_path, **common)
    raise UserError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
