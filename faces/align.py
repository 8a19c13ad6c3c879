"""Alignment: a similarity transform that puts five landmarks on the template, and the crops it makes.

The template is the one of the authors' face_enhancement.py / align_faces.py: five points given for a
96 x 112 crop, made square (112 x 112, x shifted by 8), padded by 25 % of the side on every edge
(168 x 168, shifted by 28) and scaled to the model's size. At 512 this puts the eyes at about
(202, 243) and (309, 242), the nose at (256, 304) and the mouth corners at (212, 367) and (301, 367),
close to the FFHQ alignment the generator was trained on.

Two ways to fit and warp to it:
* ours (`similarity_transform`, `align_faces`): a float64 fit, cubic warps, shrinking large faces
  first, reflected borders (what faces.pipeline uses);
* the authors' (`umeyama`, `authors_transforms`, `authors_crops`): their align_faces.warp_and_crop_face
  as FaceEnhancement calls it, bit for bit — Umeyama's closed form on float32 points, the inverse
  fitted separately with the forward scale inverted, a bilinear warp onto black (what faces.enhance
  uses, and what their fixtures were made with).
"""
import cv2
import numpy as np

# Eye left, eye right, nose tip, mouth left, mouth right (image terms) in the 96 x 112 reference crop.
_POINTS_96x112 = np.array([[30.29459953, 51.69630051], [65.53179932, 51.50139999], [48.02519989, 71.73660278],
                           [33.54930115, 92.3655014], [62.72990036, 92.20410156]], np.float64)
_SQUARE_SHIFT = (112 - 96) / 2  # x shift that centres the 96-wide crop in a 112 square
_INNER_PADDING = 0.25  # fraction of the side added on each edge
_PADDED_SIDE = 112 * (1 + 2 * _INNER_PADDING)  # 168


def template(size):
    """The five template points (5, 2) for a size x size aligned face."""
    points = _POINTS_96x112 + [_SQUARE_SHIFT, 0.0] + 112 * _INNER_PADDING
    return points * (size / _PADDED_SIDE)


def similarity_transform(landmarks, size):
    """2x3 matrix taking photo pixels to aligned-crop pixels: the least-squares similarity (rotation,
    uniform scale, translation) from `landmarks` (5, 2) to the template.

    cv2.estimateAffinePartial2D with a threshold no point can exceed keeps all five points as inliers,
    and its Levenberg-Marquardt refinement then converges to the least-squares fit (Umeyama's closed
    form, which the authors use); the tests check the two agree."""
    src = np.asarray(landmarks, np.float64).reshape(5, 2)
    dst = template(size)
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1e6,
                                            maxIters=10, refineIters=100)
    if matrix is None:  # degenerate landmarks (all on one point)
        scale = size / max(np.ptp(src[:, 0]) + np.ptp(src[:, 1]), 1.0)
        matrix = np.array([[scale, 0, 0], [0, scale, 0]], np.float64)
        matrix[:, 2] = dst.mean(0) - scale * src.mean(0)
    return matrix


def transform_scale(matrix):
    """Uniform scale of a similarity matrix."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def warp_region(matrix, size, image_shape):
    """Integer bounding rectangle (x0, y0, x1, y1), clipped to the image, of the aligned square mapped
    back into the photo: the only pixels the paste-back may touch."""
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    mapped = corners @ inverse[:, :2].T + inverse[:, 2]
    height, width = image_shape[:2]
    x0, y0 = np.floor(mapped.min(0)).astype(int)
    x1, y1 = np.ceil(mapped.max(0)).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def shrink_first(image, matrix, size):
    """For faces larger than the crop, an area-averaged smaller copy of the region around the face and
    the matrix adjusted to it: warpAffine alone samples only 4 pixels per output pixel, which aliases
    when it shrinks a face several times."""
    scale = transform_scale(matrix)
    if scale >= 0.75:
        return image, matrix
    x0, y0, x1, y1 = warp_region(matrix, size, image.shape)
    if x1 <= x0 or y1 <= y0:
        return image, matrix
    region = image[y0:y1, x0:x1]
    small_w, small_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    small = cv2.resize(region, (small_w, small_h), interpolation=cv2.INTER_AREA)
    # small pixel (u, v) covers region pixels centred at (u + 0.5) * (w / small_w) - 0.5 (+ x0 / y0)
    sx, sy = (x1 - x0) / small_w, (y1 - y0) / small_h
    to_region = np.array([[sx, 0, 0.5 * sx - 0.5 + x0], [0, sy, 0.5 * sy - 0.5 + y0], [0, 0, 1]])
    return small, matrix @ to_region


def align_faces(image, landmarks, size):
    """Aligned crops (N, size, size, 3) uint8 and their matrices (N, 2, 3) photo -> crop.

    Pixels outside the photo are filled by reflection, which the restorer sees as plausible texture
    rather than a black edge."""
    crops = np.empty((len(landmarks), size, size, 3), np.uint8)
    matrices = np.empty((len(landmarks), 2, 3), np.float64)
    for i, points in enumerate(landmarks):
        matrices[i] = similarity_transform(points, size)
        source, matrix = shrink_first(image, matrices[i], size)
        crops[i] = cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_CUBIC,
                                  borderMode=cv2.BORDER_REFLECT101)
    return crops, matrices


# ----------------------------------------------------------------------------------------------
# The authors' alignment (align_faces.py: _umeyama and warp_and_crop_face), as FaceEnhancement uses it.

def umeyama(source, target, scale=None):
    """Umeyama's least-squares similarity taking `source` (K, 2) onto `target` (K, 2): a 3x3
    homogeneous matrix and its scale. scale=None estimates the scale; a number imposes it.

    The arithmetic, operation order and dtypes are those of the authors' _umeyama: they hand it float32
    points, so the means, the covariance, its SVD and the variance stay float32 while the matrix is
    assembled in float64. Changing any of that moves their crops by a bilinear rounding step.
    Degenerate points (all equal) give a matrix of NaN, which `authors_transforms` refuses.
    """
    count, dim = source.shape
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / count
    reflection = np.ones((dim,), np.float64)  # -1 in the last entry when the covariance flips orientation
    if np.linalg.det(covariance) < 0:
        reflection[dim - 1] = -1
    matrix = np.eye(dim + 1, dtype=np.float64)
    u, singular, vt = np.linalg.svd(covariance)
    rank = np.linalg.matrix_rank(covariance)
    if rank == 0:
        return np.full((dim + 1, dim + 1), np.nan), np.nan
    if rank == dim - 1:  # collinear points: the rotation's handedness comes from U and V themselves
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            matrix[:dim, :dim] = u @ vt
        else:
            flipped = reflection.copy()
            flipped[dim - 1] = -1
            matrix[:dim, :dim] = u @ np.diag(flipped) @ vt
    else:
        matrix[:dim, :dim] = u @ np.diag(reflection) @ vt
    if scale is None:
        scale = 1.0 / source_centred.var(axis=0).sum() * (singular @ reflection)
    matrix[:dim, dim] = target_mean - scale * (matrix[:dim, :dim] @ source_mean)
    matrix[:dim, :dim] *= scale
    return matrix, scale


def authors_transforms(landmarks, size):
    """(photo -> crop, crop -> photo) 2x3 float64 matrices for a size x size face, as the authors' 
    warp_and_crop_face computes them: both fitted by `umeyama` on float32 points, the inverse with the
    forward scale inverted (not the matrix inverse). landmarks: (5, 2) x, y in photo pixels."""
    source = np.float32(landmarks).reshape(5, 2)
    target = np.float32(template(size))
    forward, scale = umeyama(source, target)
    inverse, _ = umeyama(target, source, scale=1.0 / scale)
    if not (np.isfinite(forward).all() and np.isfinite(inverse).all()):
        raise ValueError(f"degenerate face landmarks {source.tolist()}: no similarity transform")
    return forward[:2], inverse[:2]


def authors_crops(image, landmarks, size):
    """The authors' aligned crops (N, size, size, C) of `image` and their crop -> photo matrices (N, 2, 3).

    Bilinear warps with a black border: their cv2.warpAffine(..., flags=3) asks for INTER_AREA, which
    warpAffine does not implement and runs as INTER_LINEAR (the fixtures' README checked they are equal)."""
    crops = np.empty((len(landmarks), size, size) + image.shape[2:], image.dtype)
    inverses = np.empty((len(landmarks), 2, 3), np.float64)
    for i, points in enumerate(landmarks):
        forward, inverses[i] = authors_transforms(points, size)
        crops[i] = cv2.warpAffine(image, forward, (size, size), flags=cv2.INTER_LINEAR)
    return crops, inverses


def points_from_retinaface(row):
    """(5, 2) x, y landmarks from one row of RetinaFace's detect() layout [x0..x4, y0..y4]."""
    return np.reshape(np.asarray(row), (2, 5)).T
