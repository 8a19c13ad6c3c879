"""Detector recall and precision on the shared "wild" photos (../shared/data/wild).

The boxes below are our own annotation of those photos: every face a person recognises as a face, box
x1, y1, x2, y2 in pixels (forehead to chin, ear to ear). They were seeded from the detections of both
detectors and each one was checked by eye; faces neither detector found would have been added by hand
(there were none). `ignore` marks background crowds whose faces are a few pixels wide: a detection
there counts neither way.
"""
import numpy as np

from faces.detection import box_overlap

MATCH_IOU = 0.4  # a detection is a hit when its box overlaps a true face's box this much

WILD_TRUTH = {
    "Solvay_conference_1927.png": {
        "faces": [
            [208, 31, 244, 80], [308, 66, 339, 107], [375, 89, 409, 138], [485, 87, 519, 130],
            [605, 95, 638, 141], [706, 74, 738, 116], [816, 76, 851, 122], [923, 72, 958, 116],
            [1017, 71, 1049, 112], [1089, 29, 1122, 75], [1152, 72, 1186, 115], [64, 152, 99, 201],
            [183, 173, 220, 219], [318, 157, 354, 203], [464, 156, 505, 207], [625, 150, 660, 195],
            [742, 153, 775, 199], [865, 161, 901, 210], [1007, 164, 1045, 212], [1142, 171, 1179, 221],
            [104, 201, 143, 249], [241, 203, 283, 260], [381, 203, 418, 248], [527, 205, 569, 260],
            [703, 198, 743, 248], [824, 200, 864, 249], [936, 198, 974, 246], [1088, 208, 1124, 256],
            [1192, 224, 1231, 273],
        ],
        "ignore": [],
    },
    "bald_guys.jpg": {
        "faces": [
            [70, 44, 226, 262], [339, 27, 448, 173], [553, 54, 732, 309], [882, 55, 1031, 287],
            [1457, 47, 1729, 430], [1831, 410, 1929, 556], [336, 222, 437, 359], [64, 347, 222, 566],
            [326, 415, 461, 608], [568, 387, 731, 628], [884, 355, 1042, 593], [70, 657, 220, 875],
            [386, 743, 612, 1079], [772, 776, 943, 1018], [1061, 713, 1235, 966], [1649, 686, 1742, 810],
            [56, 955, 192, 1143], [1127, 1053, 1250, 1225], [74, 1254, 237, 1492], [357, 1176, 563, 1487],
            [774, 1194, 932, 1434], [1083, 1268, 1246, 1495], [1455, 1312, 1572, 1484],
            [1800, 1294, 1939, 1480],
        ],
        "ignore": [[195, 900, 300, 1180]],  # the crowd behind the man at the left edge
    },
    "10045.png": {
        "faces": [[173, 107, 251, 214], [384, 132, 456, 220], [369, 430, 437, 520]],
        "ignore": [],
    },
    "2008_002079.jpg": {
        "faces": [[35, 182, 79, 241], [57, 124, 94, 171], [122, 132, 152, 170], [351, 135, 381, 171],
                  [412, 160, 444, 203], [444, 162, 492, 223]],
        "ignore": [[265, 25, 310, 65], [400, 60, 500, 110]],  # barman and diners in the background
    },
    "2009_004587.jpg": {
        "faces": [[152, 30, 221, 131], [271, 275, 327, 348]],
        "ignore": [],
    },
}


def match_faces(boxes, scores, truth, ignore=(), iou=MATCH_IOU):
    """Count hits against true boxes: (true positives, false negatives, false positives).

    Detections are matched greedily, best score first, each to the unmatched true face it overlaps
    most (IoU >= `iou`). An unmatched detection whose centre lies in an `ignore` box is not counted."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    truth = np.asarray(truth, np.float64).reshape(-1, 4)
    overlap = box_overlap(boxes, truth) if len(boxes) and len(truth) else np.zeros((len(boxes), len(truth)))
    taken = np.zeros(len(truth), bool)
    hits = false_pos = 0
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        candidates = np.where(~taken & (overlap[i] >= iou))[0]
        if len(candidates):
            taken[candidates[np.argmax(overlap[i, candidates])]] = True
            hits += 1
            continue
        cx, cy = (boxes[i, 0] + boxes[i, 2]) / 2, (boxes[i, 1] + boxes[i, 3]) / 2
        if not any(x1 <= cx <= x2 and y1 <= cy <= y2 for x1, y1, x2, y2 in ignore):
            false_pos += 1
    return hits, len(truth) - hits, false_pos


def evaluate_photo(faces, name):
    """(tp, fn, fp) of detected `faces` on the shared photo `name` (a key of WILD_TRUTH)."""
    entry = WILD_TRUTH[name]
    return match_faces(faces.boxes, faces.scores, entry["faces"], entry["ignore"])
