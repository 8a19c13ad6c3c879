#!/usr/bin/env bash
# TIPC train -> eval -> export -> inference chain:
#     bash test_tipc/test_train_inference_python.sh CONFIG MODE
# MODE: lite_train_lite_infer | whole_train_whole_infer | whole_infer (run test_tipc/prepare.sh CONFIG MODE
# first). Every command's status goes to test_tipc/output/<model>/<MODE>/results_python.log as
# "Run successfully with command - ...!" or "Run failed with command - ...!", its output to a .log file
# beside it; the exit status is 1 when any command failed. See test_tipc/README.md.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
CONFIG=$(func_check_arguments test_train_inference_python.sh "${1:-}" "${2:-}") || exit 2
MODE=$2
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

IFS=$'\n' read -d '' -r -a lines < "${CONFIG}"
if (( ${#lines[@]} < 40 )); then
    echo "test_train_inference_python.sh: ${CONFIG} has ${#lines[@]} lines; the GPEN layout has 40 (see test_tipc/README.md)" >&2
    exit 2
fi

# ---- train params (line positions: see test_tipc/README.md)
model_name=$(func_parser_value "${lines[1]}")
python=$(func_parser_value "${lines[2]}")
gpu_list=$(func_parser_value "${lines[3]}")
train_device_key=$(func_parser_key "${lines[4]}")
train_device_list=$(func_parser_value "${lines[4]}")
set_config=$(func_set_params "$(func_parser_key "${lines[5]}")" "$(func_parser_params "${lines[5]}" "${MODE}")")
set_max_iter=$(func_set_params "$(func_parser_key "${lines[6]}")" "$(func_parser_params "${lines[6]}" "${MODE}")")
save_model_key=$(func_parser_key "${lines[7]}")
output_root=$(func_parser_value "${lines[7]}")
set_train_batch=$(func_set_params "$(func_parser_key "${lines[8]}")" "$(func_parser_params "${lines[8]}" "${MODE}")")
train_path=$(func_parser_params "${lines[9]}" "${MODE}")
set_train_path=$(func_set_params "$(func_parser_key "${lines[9]}")" "${train_path}")
test_path_key=$(func_parser_key "${lines[10]}")
test_path=$(func_parser_params "${lines[10]}" "${MODE}")
train_model_name=$(func_parser_value "${lines[11]}")
set_id_weights=$(func_set_params "$(func_parser_key "${lines[12]}")" "$(func_parser_params "${lines[12]}" "${MODE}")")
train_options=$(func_parser_params "${lines[13]}" "${MODE}")
trainer_list=$(func_parser_value "${lines[14]}")
trainer_key=$(func_parser_key "${lines[15]}")
train_py=$(func_parser_value "${lines[15]}")
# ---- eval params
eval_py=$(func_parser_value "${lines[18]}")
eval_weights_key=$(func_parser_key "${lines[19]}")
eval_options=$(func_parser_params "${lines[20]}" "${MODE}")
# ---- export and inference params
save_infer_key=$(func_parser_key "${lines[23]}")
save_infer_name=$(func_parser_value "${lines[23]}")
export_weights_key=$(func_parser_key "${lines[24]}")
export_py=$(func_parser_value "${lines[25]}")
whole_infer_weights=$(func_parser_params "${lines[26]}" "${MODE}")
inference_py=$(func_parser_value "${lines[27]}")
infer_model_key=$(func_parser_key "${lines[28]}")
infer_device_key=$(func_parser_key "${lines[29]}")
infer_device_list=$(func_parser_value "${lines[29]}")
mkldnn_key=$(func_parser_key "${lines[30]}")
mkldnn_list=$(func_parser_value "${lines[30]}")
threads_key=$(func_parser_key "${lines[31]}")
threads_list=$(func_parser_value "${lines[31]}")
infer_batch_key=$(func_parser_key "${lines[32]}")
infer_batch_list=$(func_parser_value "${lines[32]}")
trt_key=$(func_parser_key "${lines[33]}")
trt_list=$(func_parser_value "${lines[33]}")
precision_key=$(func_parser_key "${lines[34]}")
precision_list=$(func_parser_value "${lines[34]}")
set_infer_img=$(func_set_params "$(func_parser_key "${lines[35]}")" "$(func_parser_params "${lines[35]}" "${MODE}")")
infer_output_key=$(func_parser_key "${lines[36]}")
benchmark_key=$(func_parser_key "${lines[37]}")
benchmark_value=$(func_parser_value "${lines[37]}")
IFS='|' read -r -a infer_device_settings <<< "${infer_device_list}"
IFS='|' read -r -a mkldnn_settings <<< "${mkldnn_list}"
IFS='|' read -r -a thread_settings <<< "${threads_list}"
IFS='|' read -r -a infer_batch_settings <<< "${infer_batch_list}"
IFS='|' read -r -a trt_settings <<< "${trt_list}"
IFS='|' read -r -a precision_settings <<< "${precision_list}"
# ---- expected results
expected_file=$(func_parser_params "${lines[39]}" "${MODE}")
lite_data_dir=$(dirname "${train_path}")

LOG_PATH=${output_root%/}/${MODE}
rm -rf "${LOG_PATH}"   # the log describes this run only
mkdir -p "${LOG_PATH}"
status_log=${LOG_PATH}/results_python.log
: > "${status_log}"
set_benchmark=""
[[ ${benchmark_value} == "True" ]] && set_benchmark=${benchmark_key}
has_cuda=false
func_paddle_has_cuda "${python}" && has_cuda=true
runs=0
failures=0

# Runs one command with its output in a log file, writes its status line, and counts it.
function run_step() {
    local cmd=$1 log=$2 status
    eval "${cmd} > ${log} 2>&1"
    status=$?
    runs=$((runs + 1))
    if (( status != 0 )); then
        echo "---- last lines of ${log}:"
        tail -n 15 "${log}"
    fi
    status_check "${status}" "${cmd} > ${log} 2>&1" "${status_log}" || { failures=$((failures + 1)); return 1; }
}

function note_skip() {
    echo "Skipped - $*" | tee -a "${status_log}"
}

# Compares a step's metrics with test_tipc/results/ (when the mode has expected values) and, for the
# predictor, with the same run's evaluation (when it succeeded).
function compare_step() {
    local step=$1 log=$2 reference=${3:-} precision=${4:-fp32} args=""
    if [[ ${expected_file} != "null" ]]; then
        args="--expected ${expected_file} --data ${lite_data_dir}"
    fi
    if [[ -n ${reference} ]]; then
        args+=" --reference ${reference} --precision ${precision}"
    fi
    [[ -z ${args} ]] && return 0
    # A failed comparison shows its lines through run_step; a passed one shows them here.
    run_step "${python} test_tipc/compare_results.py --step ${step} --log ${log} ${args}" "${log%.log}_compare.log" \
        && cat "${log%.log}_compare.log"
}

# Every inference setting of the config on one exported model.
function run_inference() {
    local model_dir=$1 tag=$2 eval_log=$3
    local device mkldnn threads batch trt precision name cmd
    local common="${python} ${inference_py} ${infer_model_key}=${model_dir} ${set_infer_img} ${set_benchmark}"
    for device in "${infer_device_settings[@]}"; do
        if [[ ${device} == "cpu" ]]; then
            for mkldnn in "${mkldnn_settings[@]}"; do
                for threads in "${thread_settings[@]}"; do
                    for batch in "${infer_batch_settings[@]}"; do
                        name=${LOG_PATH}/${tag}_infer_cpu_mkldnn_${mkldnn}_threads_${threads}_batch_${batch}
                        cmd="${common} ${infer_device_key}=cpu ${mkldnn_key}=${mkldnn} ${threads_key}=${threads}"
                        cmd+=" ${infer_batch_key}=${batch} ${infer_output_key}=${name}"
                        run_step "${cmd}" "${name}.log" && compare_step infer "${name}.log" "${eval_log}" fp32
                    done
                done
            done
        elif [[ ${device} == "gpu" ]]; then
            if [[ ${has_cuda} != true ]]; then
                note_skip "inference on gpu: this Paddle is built without CUDA"
                continue
            fi
            for trt in "${trt_settings[@]}"; do
                for precision in "${precision_settings[@]}"; do
                    # Without TensorRT the GPU predictor computes in fp32 whatever the precision says.
                    [[ ${precision} != "fp32" && ${trt} != "True" ]] && continue
                    for batch in "${infer_batch_settings[@]}"; do
                        name=${LOG_PATH}/${tag}_infer_gpu_trt_${trt}_precision_${precision}_batch_${batch}
                        cmd="${common} ${infer_device_key}=gpu ${trt_key}=${trt} ${precision_key}=${precision}"
                        cmd+=" ${infer_batch_key}=${batch} ${infer_output_key}=${name}"
                        run_step "${cmd}" "${name}.log" \
                            && compare_step infer "${name}.log" "${eval_log}" "${precision}"
                    done
                done
            done
        else
            note_skip "inference on '${device}': only cpu and gpu are supported"
        fi
    done
}

# Evaluation, export and inference of one set of generator weights.
function eval_export_infer() {
    local weights=$1 run_dir=$2 tag=$3 device=$4 prefix=${5:-}
    local eval_log=${LOG_PATH}/${tag}_eval.log reference=""
    local set_test_path
    set_test_path=$(func_set_params "${test_path_key}" "${test_path}")
    if [[ ${eval_py} != "null" ]]; then
        local cmd="${prefix}${python} ${eval_py} ${eval_weights_key}=${weights} ${train_device_key}=${device}"
        cmd+=" ${set_test_path} --report=${run_dir}/eval_report.json"
        [[ ${eval_options} != "null" ]] && cmd+=" ${eval_options}"
        if run_step "${cmd}" "${eval_log}"; then
            reference=${eval_log}
            compare_step eval "${eval_log}"
        fi
    fi
    local model_dir=${run_dir}/${save_infer_name}
    if run_step "${python} ${export_py} ${export_weights_key}=${weights} ${save_infer_key}=${model_dir}" \
        "${LOG_PATH}/${tag}_export.log"; then
        run_inference "${model_dir}" "${tag}" "${reference}"
    else
        note_skip "inference of ${tag}: the export failed"
    fi
}

if [[ ${MODE} == "whole_infer" ]]; then
    device=cpu
    [[ ${has_cuda} == true ]] && device=gpu
    run_dir=${LOG_PATH}/whole_infer
    mkdir -p "${run_dir}"
    eval_export_infer "${whole_infer_weights}" "${run_dir}" whole_infer "${device}"
else
    IFS='|' read -r -a gpus <<< "${gpu_list}"
    IFS='|' read -r -a train_devices <<< "${train_device_list}"
    IFS='|' read -r -a trainers <<< "${trainer_list}"
    for index in "${!gpus[@]}"; do
        gpu=${gpus[index]}
        device=${train_devices[index]:-gpu}
        if [[ ${gpu} == "-1" && ${MODE} == "whole_train_whole_infer" ]]; then
            note_skip "training on cpu (gpu_list -1): whole_train_whole_infer trains the 256 model on GPUs only"
            continue
        fi
        if [[ ${gpu} != "-1" && ${has_cuda} != true ]]; then
            note_skip "training on gpu ${gpu}: this Paddle is built without CUDA"
            continue
        fi
        prefix=""
        launcher=""
        if [[ ${gpu} == *,* ]]; then
            launcher="-m paddle.distributed.launch --gpus=${gpu} --log_dir=${LOG_PATH}/launch_gpus_${gpu//,/_} "
            prefix="CUDA_VISIBLE_DEVICES=${gpu%%,*} "
        elif [[ ${gpu} != "-1" ]]; then
            prefix="CUDA_VISIBLE_DEVICES=${gpu} "
        fi
        for trainer in "${trainers[@]}"; do
            if [[ ${trainer} != "${trainer_key}" || ${train_py} == "null" ]]; then
                note_skip "trainer ${trainer}: not defined in ${CONFIG}"
                continue
            fi
            tag=${trainer}_gpus_${gpu//,/_}
            run_dir=${LOG_PATH}/${tag}
            cmd="${prefix}${python} ${launcher}${train_py} ${set_config} ${train_device_key}=${device}"
            cmd+=" ${save_model_key}=${run_dir} ${set_max_iter} ${set_train_batch} ${set_train_path}"
            cmd+=" $(func_set_params "${test_path_key}" "${test_path}") ${set_id_weights}"
            [[ ${train_options} != "null" ]] && cmd+=" ${train_options}"
            if run_step "${cmd}" "${LOG_PATH}/${tag}_train.log"; then
                eval_export_infer "${run_dir}/${train_model_name}" "${run_dir}" "${tag}" "${device}" "${prefix}"
            else
                note_skip "evaluation, export and inference of ${tag}: the training failed"
            fi
        done
    done
fi

echo "${MODE}: ${runs} commands, ${failures} failed, ${SECONDS} s; status lines in ${status_log}"
if (( runs == 0 )); then
    echo "test_train_inference_python.sh: nothing ran in ${MODE} (see the Skipped lines in ${status_log})" >&2
    exit 1
fi
(( failures == 0 ))
