#!/usr/bin/env bash
# Gets what a TIPC mode needs into test_tipc/data/ (git-ignored), where the config's fixed paths point:
#     bash test_tipc/prepare.sh CONFIG MODE
#   test_tipc/data/train/        training faces        test_tipc/data/config.yaml   train.py's -c
#   test_tipc/data/test/         test faces            test_tipc/data/inference/    exported model (whole_infer)
#   test_tipc/data/mode.txt      the mode prepared     test_tipc/data/source.txt    where the faces came from
#
# lite_train_lite_infer: the sample faces shipped in examples/ (examples/README.md): the 10 of train/ to
#   train, the 8 of test/ to test; or $GPEN_TIPC_DATA, a folder of aligned square faces: its first 16 (by
#   path) train, its first 8 test. configs/lite_64.yaml. No download, nothing from ../shared.
# lite_train_whole_infer: the same training faces and config; $GPEN_CELEBA_HQ_DIR to test.
# whole_train_whole_infer: $GPEN_FFHQ_DIR to train, $GPEN_CELEBA_HQ_DIR to test, configs/gpen_256.yaml
#   (with train.id_weights = $GPEN_ID_WEIGHTS when set); needs a Paddle with CUDA.
# whole_infer: $GPEN_CELEBA_HQ_DIR to test; $GPEN_WEIGHTS (the authors' GPEN-BFR-256.pth or a
#   g_ema.pdparams) exported to test_tipc/data/inference/, where the inference rows read it.
# Whatever is missing is reported in one line, with status 1 and no half-built folder left behind.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
CONFIG=$(func_check_arguments prepare.sh "${1:-}" "${2:-}") || exit 2
MODE=$2
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${REPO}" || exit 2

mapfile -t lines < "${CONFIG}"
python=$(func_parser_value "${lines[2]}")

DATA=test_tipc/data
EXAMPLES=examples
TRAIN_COUNT=16   # training faces taken from GPEN_TIPC_DATA at most
TEST_COUNT=8     # test faces of the lite modes (the evaluation and the predictor run on these)

function die() {
    echo "prepare.sh: $*" >&2
    rm -rf "${DATA}"   # a half-built folder would fail later in a less obvious place
    exit 1
}

# Image files under a folder (following links), sorted bytewise so that every machine picks the same ones.
function list_images() {
    find -L "$1" -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.bmp' \
        -o -iname '*.webp' \) 2>/dev/null | LC_ALL=C sort
}

function has_images() {
    [[ -d $1 && -n $(list_images "$1" | head -n 1) ]]
}

# Copies the first COUNT images under ROOT into TARGET; names relative to ROOT with '/' -> '_'.
function copy_first() {
    local root=${1%/} count=$2 target=$3 path name
    mkdir -p "${target}"
    while IFS= read -r path; do
        name=${path#"${root}"/}
        cp "${path}" "${target}/${name//\//_}" || return 1
    done < <(list_images "${root}" | head -n "${count}")
}

# Every face must read as an aligned (square) image, or the run would fail later in a less obvious place.
function check_faces() {
    local folder=$1 source=$2 problem
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
        sys.exit(f'{name} from {sys.argv[2]} is {image.shape[1]}x{image.shape[0]}; TIPC needs aligned square faces')
" "${folder}" "${source}" 2>&1) || die "${problem##*$'\n'}"
}

# The lite training faces (and, for lite_train_lite_infer, the test faces) into test_tipc/data.
function lite_faces() {
    local with_test=$1
    if [[ -n ${GPEN_TIPC_DATA:-} ]]; then
        local count
        [[ -d ${GPEN_TIPC_DATA} ]] || die "GPEN_TIPC_DATA=${GPEN_TIPC_DATA} is not a folder (give a folder of aligned square face images)"
        count=$(list_images "${GPEN_TIPC_DATA}" | wc -l)
        (( count >= TEST_COUNT )) || die "GPEN_TIPC_DATA=${GPEN_TIPC_DATA} holds ${count} image(s); the lite modes need at least ${TEST_COUNT} aligned square faces"
        copy_first "${GPEN_TIPC_DATA}" "${TRAIN_COUNT}" "${DATA}/train" || die "cannot copy the faces of ${GPEN_TIPC_DATA}"
        [[ ${with_test} == yes ]] && { copy_first "${GPEN_TIPC_DATA}" "${TEST_COUNT}" "${DATA}/test" \
            || die "cannot copy the faces of ${GPEN_TIPC_DATA}"; }
        source="GPEN_TIPC_DATA=${GPEN_TIPC_DATA}"
    else
        has_images "${EXAMPLES}/train" && has_images "${EXAMPLES}/test" \
            || die "the sample faces ${EXAMPLES}/train and ${EXAMPLES}/test are missing from this checkout; restore them (git checkout -- examples) or set GPEN_TIPC_DATA to a folder of 8 or more aligned square faces"
        copy_first "${EXAMPLES}/train" 1000 "${DATA}/train" || die "cannot copy ${EXAMPLES}/train"
        [[ ${with_test} == yes ]] && { copy_first "${EXAMPLES}/test" "${TEST_COUNT}" "${DATA}/test" \
            || die "cannot copy ${EXAMPLES}/test"; }
        source="examples"
    fi
    check_faces "${DATA}/train" "${source}"
    [[ ${with_test} == yes ]] && check_faces "${DATA}/test" "${source}"
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

# A folder given in the environment, linked where the config looks for it.
function link_folder() {
    ln -s "$(cd "$1" && pwd)" "$2" || die "cannot link $1 as $2"
}

missing=()
source=""
case ${MODE} in
    lite_train_lite_infer | lite_train_whole_infer)
        [[ ${MODE} == lite_train_whole_infer ]] && need_folder GPEN_CELEBA_HQ_DIR "CelebA-HQ aligned test faces"
        report_missing
        rm -rf "${DATA}" && mkdir -p "${DATA}"
        if [[ ${MODE} == lite_train_lite_infer ]]; then
            lite_faces yes
        else
            lite_faces no
            link_folder "${GPEN_CELEBA_HQ_DIR}" "${DATA}/test"
            source+="; test faces ${GPEN_CELEBA_HQ_DIR}"
        fi
        cp configs/lite_64.yaml "${DATA}/config.yaml" || die "cannot copy configs/lite_64.yaml"
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
        rm -rf "${DATA}" && mkdir -p "${DATA}"
        link_folder "${GPEN_FFHQ_DIR}" "${DATA}/train"
        link_folder "${GPEN_CELEBA_HQ_DIR}" "${DATA}/test"
        if [[ -n ${GPEN_ID_WEIGHTS:-} ]]; then
            # configs/gpen_256.yaml with the identity loss's weights filled in.
            ${python} -c "
import sys, yaml
with open('configs/gpen_256.yaml', encoding='utf-8') as f:
    values = yaml.safe_load(f) or {}
values.setdefault('train', {})['id_weights'] = sys.argv[1]
with open(sys.argv[2], 'w', encoding='utf-8') as f:
    f.write('# configs/gpen_256.yaml with train.id_weights from GPEN_ID_WEIGHTS (written by test_tipc/prepare.sh)\n')
    yaml.safe_dump(values, f, sort_keys=False)
" "$(cd "$(dirname "${GPEN_ID_WEIGHTS}")" && pwd)/$(basename "${GPEN_ID_WEIGHTS}")" "${DATA}/config.yaml" \
                || die "cannot write ${DATA}/config.yaml"
        else
            cp configs/gpen_256.yaml "${DATA}/config.yaml" || die "cannot copy configs/gpen_256.yaml"
        fi
        source="training faces ${GPEN_FFHQ_DIR}; test faces ${GPEN_CELEBA_HQ_DIR}"
        ;;
    whole_infer)
        need_file GPEN_WEIGHTS "generator weights to export: the authors' GPEN-BFR-256.pth or a g_ema.pdparams"
        need_folder GPEN_CELEBA_HQ_DIR "CelebA-HQ aligned test faces"
        report_missing
        rm -rf "${DATA}" && mkdir -p "${DATA}"
        link_folder "${GPEN_CELEBA_HQ_DIR}" "${DATA}/test"
        # As the standard prepare.sh fetches an exported model for whole_infer, this one exports the weights.
        echo "prepare.sh: exporting ${GPEN_WEIGHTS} to ${DATA}/inference"
        ${python} export_model.py --model_path "${GPEN_WEIGHTS}" --save_dir "${DATA}/inference" > "${DATA}/export.log" 2>&1 \
            || die "exporting ${GPEN_WEIGHTS} failed: $(tail -n 1 "${DATA}/export.log")"
        source="weights ${GPEN_WEIGHTS}; test faces ${GPEN_CELEBA_HQ_DIR}"
        ;;
esac
echo "${source}" > "${DATA}/source.txt"
echo "${MODE}" > "${DATA}/mode.txt"
counts=""
for part in train test; do
    [[ -e ${DATA}/${part} ]] && counts+=", $(list_images "${DATA}/${part}" | wc -l) ${part} faces in ${DATA}/${part}"
done
echo "prepare.sh: ${MODE} from ${source}${counts}"
