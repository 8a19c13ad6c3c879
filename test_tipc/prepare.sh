#!/usr/bin/env bash
# Gets the data a TIPC mode needs:   bash test_tipc/prepare.sh CONFIG MODE
#
# lite_train_lite_infer: builds test_tipc/data/lite/{train,test} (git-ignored) from the first source found:
#   1. $GPEN_TIPC_DATA, a folder of aligned square face images: the first 16 train, the first 8 test;
#   2. ../shared/data beside the clone: ffhq/ (10 FFHQ faces) train, the first 8 of celeba_hq/ test;
#   3. a download of the GPEN authors' sample faces, examples/ffhq-10 of github.com/yangxy/GPEN
#      (FFHQ 00000-00009, 1024² PNG): all 10 train, the first 8 test. $GPEN_TIPC_SAMPLE_URL replaces the
#      base address (a mirror, or file:///path/to/ffhq-10 for an offline copy).
#   It writes data/lite/source.txt naming the source; test_tipc/results/ holds expected metrics for
#   sources 2 and 3 (compare_results.py tells them apart by content).
# whole_train_whole_infer: checks $GPEN_FFHQ_DIR, $GPEN_CELEBA_HQ_DIR (and $GPEN_ID_WEIGHTS when set)
#   and that Paddle has CUDA. whole_infer: checks $GPEN_WEIGHTS and $GPEN_CELEBA_HQ_DIR.
# Whatever is missing is reported in one line, with a non-zero exit.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
CONFIG=$(func_check_arguments prepare.sh "${1:-}" "${2:-}") || exit 2
MODE=$2
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${REPO}" || exit 2

IFS=$'\n' read -d '' -r -a lines < "${CONFIG}"
python=$(func_parser_value "${lines[2]}")

SAMPLE_URL=${GPEN_TIPC_SAMPLE_URL:-https://raw.githubusercontent.com/yangxy/GPEN/main/examples/ffhq-10}
SAMPLE_NAMES=(00000.png 00001.png 00002.png 00003.png 00004.png 00005.png 00006.png 00007.png 00008.png 00009.png)
LITE_DIR=test_tipc/data/lite
TRAIN_COUNT=16   # lite training faces at most
TEST_COUNT=8     # lite test faces (the evaluation and the predictor run on these)

function die() {
    echo "prepare.sh: $*" >&2
    # A half-built lite set would fail later in a less obvious place.
    [[ ${MODE} == "lite_train_lite_infer" ]] && rm -rf "${LITE_DIR}"
    exit 1
}

# Image files under a folder (following links), sorted bytewise so every machine picks the same ones.
function list_images() {
    find -L "$1" -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.bmp' \
        -o -iname '*.webp' \) 2>/dev/null | LC_ALL=C sort
}

function has_images() {
    [[ -d $1 && -n $(list_images "$1" | head -n 1) ]]
}

# Copies files (given on stdin, one per line) into a folder; names relative to ROOT with '/' -> '_'.
function copy_from() {
    local root=$1 target=$2 path name
    while IFS= read -r path; do
        name=${path#"${root}"/}
        cp "${path}" "${target}/${name//\//_}" || return 1
    done
}

function download_samples() {
    local cache=test_tipc/data/downloads/ffhq-10 name fetch
    mkdir -p "${cache}"
    if command -v curl > /dev/null; then
        fetch="curl -fsSL --connect-timeout 20 --retry 2 -o"
    elif command -v wget > /dev/null; then
        fetch="wget -q --timeout=20 --tries=3 -O"
    else
        return 1
    fi
    for name in "${SAMPLE_NAMES[@]}"; do
        [[ -s ${cache}/${name} ]] && continue   # downloaded by an earlier run
        ${fetch} "${cache}/${name}.part" "${SAMPLE_URL}/${name}" 2> /dev/null \
            && mv "${cache}/${name}.part" "${cache}/${name}" || { rm -f "${cache}/${name}.part"; return 1; }
    done
    echo "${cache}"
}

function prepare_lite() {
    local train_root test_root source
    local shared=${REPO}/../shared/data
    rm -rf "${LITE_DIR}"
    mkdir -p "${LITE_DIR}/train" "${LITE_DIR}/test"
    if [[ -n ${GPEN_TIPC_DATA:-} ]]; then
        local count
        [[ -d ${GPEN_TIPC_DATA} ]] || die "GPEN_TIPC_DATA=${GPEN_TIPC_DATA} is not a folder (give a folder of aligned square face images)"
        count=$(list_images "${GPEN_TIPC_DATA}" | wc -l)
        (( count >= TEST_COUNT )) || die "GPEN_TIPC_DATA=${GPEN_TIPC_DATA} holds ${count} image(s); the lite run needs at least ${TEST_COUNT} aligned square faces"
        train_root=${GPEN_TIPC_DATA%/}
        test_root=${train_root}
        source="GPEN_TIPC_DATA=${GPEN_TIPC_DATA}"
    elif has_images "${shared}/ffhq" && (( $(list_images "${shared}/celeba_hq" | wc -l) >= TEST_COUNT )); then
        train_root=${shared}/ffhq
        test_root=${shared}/celeba_hq
        source="shared"
    elif train_root=$(download_samples); then
        test_root=${train_root}
        source="ffhq-10"
    else
        die "no lite faces: GPEN_TIPC_DATA is not set, ${shared} has no ffhq/ and celeba_hq/, and downloading ${SAMPLE_URL}/00000.png ... 00009.png failed (offline?); set GPEN_TIPC_DATA to a folder of 8 or more aligned square face images"
    fi
    list_images "${train_root}" | head -n "${TRAIN_COUNT}" | copy_from "${train_root}" "${LITE_DIR}/train" \
        || die "cannot copy the training faces from ${train_root} into ${LITE_DIR}/train"
    list_images "${test_root}" | head -n "${TEST_COUNT}" | copy_from "${test_root}" "${LITE_DIR}/test" \
        || die "cannot copy the test faces from ${test_root} into ${LITE_DIR}/test"
    # Every face must read as an aligned (square) RGB image, or the run would fail later in a less
    # obvious place.
    local problem
    problem=$(${python} -c "
import os, sys
from utils.errors import UserError
from utils.image_io import list_images, read_image
for path in list_images(sys.argv[1]):
    name = os.path.basename(path)
    try:
        image = read_image(path)
    except UserError as err:
        sys.exit(f'{name} from {sys.argv[2]}: {err}')
    if image.shape[0] != image.shape[1]:
        sys.exit(f'{name} from {sys.argv[2]} is {image.shape[1]}x{image.shape[0]}; the lite run needs aligned square faces')
" "${LITE_DIR}" "${source}" 2>&1) || die "${problem##*$'\n'}"
    echo "${source}" > "${LITE_DIR}/source.txt"
    echo "prepare.sh: lite data from ${source}: $(list_images "${LITE_DIR}/train" | wc -l) training faces in" \
         "${LITE_DIR}/train, $(list_images "${LITE_DIR}/test" | wc -l) test faces in ${LITE_DIR}/test"
}

# Appends "NAME (what it is: problem)" to the global `missing` list when a variable is not an image folder.
function need_folder() {
    local name=$1 what=$2 value=${!1:-}
    if [[ -z ${value} ]]; then
        missing+=("${name} (${what}: not set)")
    elif ! has_images "${value}"; then
        missing+=("${name} (${what}: ${value} is not a folder of images)")
    fi
}

function need_file() {
    local name=$1 what=$2 value=${!1:-}
    if [[ -z ${value} ]]; then
        missing+=("${name} (${what}: not set)")
    elif [[ ! -f ${value} ]]; then
        missing+=("${name} (${what}: ${value} is not a file)")
    fi
}

function report_missing() {
    if (( ${#missing[@]} )); then
        local joined
        joined=$(printf '; %s' "${missing[@]}")
        die "${MODE} needs ${joined:2}"
    fi
}

missing=()
case ${MODE} in
    lite_train_lite_infer)
        prepare_lite
        ;;
    whole_train_whole_infer)
        need_folder GPEN_FFHQ_DIR "FFHQ aligned 1024² faces, the training set"
        need_folder GPEN_CELEBA_HQ_DIR "CelebA-HQ aligned test faces"
        if [[ -n ${GPEN_ID_WEIGHTS:-} ]]; then
            need_file GPEN_ID_WEIGHTS "ArcFace model_ir_se50.pth for the identity loss (optional)"
        fi
        func_paddle_has_cuda "${python}" \
            || missing+=("paddlepaddle-gpu (training the 256 model is GPU work; this Paddle has no CUDA)")
        report_missing
        echo "prepare.sh: ${MODE}: training faces ${GPEN_FFHQ_DIR}, test faces ${GPEN_CELEBA_HQ_DIR}"
        ;;
    whole_infer)
        need_file GPEN_WEIGHTS "generator weights to export: the authors' GPEN-BFR-256.pth or a g_ema.pdparams"
        need_folder GPEN_CELEBA_HQ_DIR "CelebA-HQ aligned test faces"
        report_missing
        echo "prepare.sh: ${MODE}: weights ${GPEN_WEIGHTS}, test faces ${GPEN_CELEBA_HQ_DIR}"
        ;;
esac
