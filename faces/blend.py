"""Paste restored faces back into the photo: feathered masks, overlapping faces, untouched background.

Each restored crop is warped back with the inverse of its alignment transform and mixed in through a
feathered square mask that is exactly 0 on the crop's outer margin, so every pixel outside the warped
crop squares keeps its input value bit for bit. Where faces overlap, the colours are averaged with the
masks as weights and the coverage is the largest mask: a pixel is never darkened or brightened by being
covered twice (the authors keep the face with the larger mask instead; weighting also hides the seam
between the two faces).
"""
import cv2
import numpy as np

from faces.align import transform_scale, warp_region

# Mask margins as fractions of the crop side: 0 up to MASK_INSET from the edge, then a raised-cosine
# ramp to 1 over MASK_FEATHER. The authors' mask (a 26/512 inset rectangle blurred twice with sigma
# 11/512) reaches one half at 0.05 and ~1 at 0.11 of the side; ours reaches 1/2 at 0.08, 1 at 0.14
# and is exactly 0 at the edge.
MASK_INSET = 0.02
MASK_FEATHER = 0.12
# Faces smaller than this (box side, output pixels) get a light 3x3 blur before pasting: the authors'
# rule in face_enhancement.py (min(box height, width) < 100, kernel [1 2 1]^T [1 2 1] / 16).
SMALL_FACE = 100
_SMALL_FACE_KERNEL = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25]).astype(np.float32)


def feather_mask(size, inset=MASK_INSET, feather=MASK_FEATHER):
    """Float32 (size, size) mask in crop space: 0 at the margin, 1 in the middle, smooth in between."""
    distance = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size)) / size
    ramp = np.clip((distance - inset) / feather, 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return np.outer(ramp, ramp).astype(np.float32)


def soften_small_face(face):
    """The authors' light blur for small faces (a 3x3 binomial kernel)."""
    return cv2.filter2D(face, -1, _SMALL_FACE_KERNEL, borderType=cv2.BORDER_REFLECT101)


def _overlap_groups(regions):
    """Indices grouped so that regions of different groups never overlap (connected components)."""
    parent = list(range(len(regions)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (ax0, ay0, ax1, ay1) in enumerate(regions):
        for j in range(i):
            bx0, by0, bx1, by1 = regions[j]
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                parent[root(i)] = root(j)
    groups = {}
    for i in range(len(regions)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _crop_to_photo(matrix, size, face):
    """(source image, 2x3 matrix source -> photo) for warping a restored crop back.

    When the face is much smaller in the photo than the crop (over 4x), the crop is first shrunk with
    area averaging to 3x the final scale, so the final cubic warp never shrinks by more than 4x (less
    aliasing of restored texture) while the area step adds little blur: an identity round trip stays
    within one gray level on average on the Solvay photo (tests/test_faces_pipeline.py)."""
    inverse = cv2.invertAffineTransform(matrix)
    scale = transform_scale(matrix)  # crop pixels per photo pixel
    if scale <= 4:
        return face, inverse
    side = max(2, round(3 * size / scale))
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    step = size / side
    small_to_crop = np.array([[step, 0, 0.5 * step - 0.5], [0, step, 0.5 * step - 0.5], [0, 0, 1]])
    return small, inverse @ small_to_crop


def paste_faces(background, faces, matrices, face_sizes=None, alpha=1.0, mask=None,
                small_face=SMALL_FACE):
    """Blend restored crops into `background` (uint8 HWC, not modified); returns the new photo and the
    rectangles (x0, y0, x1, y1) that may differ from the background.

    faces: (N, S, S, 3) uint8 restored crops; matrices: (N, 2, 3) background pixels -> crop pixels;
    face_sizes: (N,) face box sides in background pixels (faces below `small_face` are softened);
    alpha: 1 pastes the restored faces fully, 0 keeps the background.
    """
    size = faces.shape[1]
    mask = feather_mask(size) if mask is None else mask
    output = background.copy()
    regions = [warp_region(m, size, background.shape) for m in matrices]
    for group in _overlap_groups(regions):
        x0 = min(regions[i][0] for i in group)
        y0 = min(regions[i][1] for i in group)
        x1 = max(regions[i][2] for i in group)
        y1 = max(regions[i][3] for i in group)
        if x1 <= x0 or y1 <= y0:
            continue
        shift = np.array([[0, 0, -x0], [0, 0, -y0]], np.float64)
        colour_sum = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        weight_sum = np.zeros((y1 - y0, x1 - x0), np.float32)
        coverage = np.zeros((y1 - y0, x1 - x0), np.float32)
        for i in group:
            face = faces[i]
            if face_sizes is not None and face_sizes[i] < small_face:
                face = soften_small_face(face)
            source, to_photo = _crop_to_photo(matrices[i], size, face)
            warped = cv2.warpAffine(source, to_photo + shift, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC,
                                    borderMode=cv2.BORDER_REPLICATE)
            weight = cv2.warpAffine(mask, cv2.invertAffineTransform(matrices[i]) + shift, (x1 - x0, y1 - y0),
                                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            colour_sum += warped.astype(np.float32) * weight[:, :, None]
            weight_sum += weight
            np.maximum(coverage, weight, out=coverage)
        covered = weight_sum > 0
        original = background[y0:y1, x0:x1].astype(np.float32)
        colour = np.where(covered[:, :, None], colour_sum / np.maximum(weight_sum, 1e-12)[:, :, None], original)
        blended = original + (alpha * coverage)[:, :, None] * (colour - original)
        output[y0:y1, x0:x1] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return output, regions
