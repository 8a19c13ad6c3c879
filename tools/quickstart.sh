#!/usr/bin/env bash
# The main job, end to end on a CPU in a few minutes, on the sample images shipped in examples/:
#     bash tools/quickstart.sh
#   setup   -> what requirements.txt lists, installed only when missing (tools/setup_env.sh says where)
#   train   -> configs/lite_64.yaml (64 px, narrow 1/16) on the 10 faces of examples/train
#   export  -> the EMA generator as a Paddle Inference model
#   faces   -> the 8 faces of examples/test degraded and restored by the exported model
#   photo   -> every face of examples/photo/solvay_1927.jpg (a gray 1927 group photo) restored
# and prints where everything is and how long each step took. Everything goes to output/quickstart/
# (emptied first). GPEN_QUICKSTART_ITERS sets the training iterations (default 200). No download, no
# ../shared; nothing but the package index for the setup.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=output/quickstart
ITERS=${GPEN_QUICKSTART_ITERS:-200}
STEPS=()

# Runs one step and records its wall time.
function step() {
    local name=$1 started
    shift
    echo
    echo "==== ${name}: $*"
    started=$(date +%s.%N)
    "$@"
    STEPS+=("$(awk -v n="${name}" -v a="${started}" -v b="$(date +%s.%N)" 'BEGIN { printf "%-7s %7.1f s", n, b - a }')")
}

echo "==== setup"
source tools/setup_env.sh requirements.txt
STEPS+=("$(printf '%-7s %7.1f s' setup "${SETUP_SECONDS}")")

rm -rf "${OUT}"
step train "${PYTHON}" train.py -c configs/lite_64.yaml --train_path examples/train --test_path examples/test \
    --output "${OUT}/run" --max_iter "${ITERS}" --overwrite
step export "${PYTHON}" export_model.py --model_path "${OUT}/run/g_ema.pdparams" --save_dir "${OUT}/inference"
step faces "${PYTHON}" infer.py --model_dir "${OUT}/inference" --img examples/test --aligned yes --degrade --seed 0 \
    --output "${OUT}/faces"
step photo "${PYTHON}" infer.py --model_dir "${OUT}/inference" --img examples/photo/solvay_1927.jpg \
    --output "${OUT}/photo"

cat <<DONE

Done. Where things are:
  ${OUT}/run/         the training run: train.log, validation.csv, samples/, checkpoints/, g_ema.pdparams
  ${OUT}/inference/   the exported model: gpen.json + gpen.pdiparams + gpen.yml
  ${OUT}/faces/       the test faces as degraded | restored | original strips (PSNR printed above)
  ${OUT}/photo/       solvay_1927.png (every face restored and pasted back) and solvay_1927_compare.jpg
Wall time of each step (Python: ${PYTHON}):
DONE
printf '  %s\n' "${STEPS[@]}"
