#!/usr/bin/env bash
# The main job on the lite data, end to end on a CPU in a few minutes:
#   faces (as TIPC's prepare.sh finds them: $GPEN_TIPC_DATA, ../shared/data, or the authors' ten FFHQ
#   examples downloaded) -> train configs/lite_64.yaml -> export -> restore the test faces with the
#   exported model (degraded | restored | original) -> say where everything is.
# GPEN_QUICKSTART_ITERS sets the training iterations (default 300).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=output/quickstart
ITERS=${GPEN_QUICKSTART_ITERS:-300}
bash test_tipc/prepare.sh test_tipc/configs/GPEN/train_infer_python.txt lite_train_lite_infer

python train.py -c configs/lite_64.yaml --train_path test_tipc/data/lite/train --test_path test_tipc/data/lite/test \
    -o train.output_dir="${OUT}/run" -o train.max_iter="${ITERS}" -o train.log_freq=50 --overwrite
python export_model.py --model_path "${OUT}/run/g_ema.pdparams" --save_dir "${OUT}/inference"
python infer.py --model_dir "${OUT}/inference" --img test_tipc/data/lite/test --degrade --seed 0 \
    --output "${OUT}/restored" --benchmark

cat <<DONE

Done. Where things are:
  ${OUT}/run/            training run: train.log, validation.csv, samples/*.png, checkpoints/, g_ema.pdparams
  ${OUT}/inference/      exported model: gpen.json + gpen.pdiparams (+ gpen.yml)
  ${OUT}/restored/       degraded | restored | original strips of the test faces
DONE
