"""Restore every face of an ordinary photo: detection with five landmarks (MTCNN in Paddle or OpenCV's
YuNet), similarity alignment to the template, batched restoration, feathered paste-back."""
from faces.align import align_faces, similarity_transform, template
from faces.blend import feather_mask, paste_faces
from faces.detect import DEFAULT_DETECTOR, DETECTORS, build_detector
from faces.detection import Faces
from faces.pipeline import (NO_FACE_NOTICE, PhotoResult, looks_aligned, make_comparison, restore_aligned,
                            restore_photo, write_outputs)
from faces.restorer import array_restorer, generator_restorer, identity_restorer

__all__ = [
    "DEFAULT_DETECTOR", "DETECTORS", "Faces", "NO_FACE_NOTICE", "PhotoResult", "align_faces", "array_restorer",
    "build_detector", "feather_mask", "generator_restorer", "identity_restorer", "looks_aligned",
    "make_comparison", "paste_faces", "restore_aligned", "restore_photo", "similarity_transform", "template",
    "write_outputs",
]
