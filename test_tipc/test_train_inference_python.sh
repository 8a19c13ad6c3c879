#!/usr/bin/env bash
# TIPC train -> eval -> export -> inference chain on a config in the standard layout:
#     bash test_tipc/test_train_inference_python.sh CONFIG MODE [GPU_ID]
# MODE: lite_train_lite_infer | lite_train_whole_infer | whole_train_whole_infer | whole_infer (run
# `bash test_tipc/prepare.sh CONFIG MODE` first). The config is read by line position exactly as
# PaddleOCR's and PaddleGAN's test_train_inference_python.sh read it, the commands are built the same way
# and every command's status goes to test_tipc/output/<model>/<MODE>/results_python.log as
# "Run successfully with command - <model> - <command> - <log>" or "Run failed with command - ...".
# What this script adds (test_tipc/README.md): it runs from anywhere, starts the log afresh, skips what
# this machine cannot run (GPU rows without CUDA) and what a failed step makes pointless, each with a
# "Skipped - ..." line, checks the printed metrics against test_tipc/results/ and the predictor's PSNR
# against the evaluation's, ends with a count, and exits 1 when a command failed.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
FILENAME=$(func_check_arguments test_train_inference_python.sh "${1:-}" "${2:-}") || exit 2
MODE=$2
GPUID=${3:-}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

mapfile -t lines < "${FILENAME}"
if (( ${#lines[@]} < 51 )); then
    echo "test_train_inference_python.sh: ${FILENAME} has ${#lines[@]} lines; the standard layout has 51 (test_tipc/README.md)" >&2
    exit 2
fi

# ---- train params (positions: test_tipc/README.md)
model_name=$(func_parser_value "${lines[1]}")
python=$(func_parser_value "${lines[2]}")
gpu_list=$(func_parser_value "${lines[3]}")
train_use_gpu_key=$(func_parser_key "${lines[4]}")
train_use_gpu_value=$(func_parser_value "${lines[4]}")
autocast_key=$(func_parser_key "${lines[5]}")
autocast_list=$(func_parser_value "${lines[5]}")
epoch_key=$(func_parser_key "${lines[6]}")
epoch_num=$(func_parser_params "${lines[6]}" "${MODE}")
save_model_key=$(func_parser_key "${lines[7]}")
train_batch_key=$(func_parser_key "${lines[8]}")
train_batch_value=$(func_parser_params "${lines[8]}" "${MODE}")
pretrain_model_key=$(func_parser_key "${lines[9]}")
pretrain_model_value=$(func_parser_value "${lines[9]}")
train_model_name=$(func_parser_value "${lines[10]}")
train_infer_img_dir=$(func_parser_value "${lines[11]}")
train_param_key1=$(func_parser_key "${lines[12]}")
train_param_value1=$(func_parser_value "${lines[12]}")
trainer_list=$(func_parser_value "${lines[14]}")
declare -A trainers=() exports=()   # trainer name -> its training command / its export command
for index in 15 16 17 18 19 20; do
    trainers[$(func_parser_key "${lines[index]}")]=$(func_parser_value "${lines[index]}")
done
norm_trainer_key=$(func_parser_key "${lines[15]}")
# ---- eval params
eval_py=$(func_parser_value "${lines[23]}")
eval_key1=$(func_parser_key "${lines[24]}")
eval_value1=$(func_parser_value "${lines[24]}")
# ---- export params: norm_export belongs to norm_train, quant_export to pact_train, ... (lines 29-34)
save_infer_key=$(func_parser_key "${lines[27]}")
export_weight_key=$(func_parser_key "${lines[28]}")
for pair in "15 29" "16 30" "17 31" "18 32" "19 33" "20 34"; do
    read -r train_index export_index <<< "${pair}"
    exports[$(func_parser_key "${lines[train_index]}")]=$(func_parser_value "${lines[export_index]}")
done
inference_dir=$(func_parser_value "${lines[35]}")
# ---- inference params
infer_model_dir_list=$(func_parser_value "${lines[36]}")
infer_export_list=$(func_parser_value "${lines[37]}")
infer_is_quant_list=$(func_parser_value "${lines[38]}")
inference_py=$(func_parser_value "${lines[39]}")
use_gpu_key=$(func_parser_key "${lines[40]}")
use_gpu_list=$(func_parser_value "${lines[40]}")
use_mkldnn_key=$(func_parser_key "${lines[41]}")
use_mkldnn_list=$(func_parser_value "${lines[41]}")
cpu_threads_key=$(func_parser_key "${lines[42]}")
cpu_threads_list=$(func_parser_value "${lines[42]}")
batch_size_key=$(func_parser_key "${lines[43]}")
batch_size_list=$(func_parser_value "${lines[43]}")
use_trt_key=$(func_parser_key "${lines[44]}")
use_trt_list=$(func_parser_value "${lines[44]}")
precision_key=$(func_parser_key "${lines[45]}")
precision_list=$(func_parser_value "${lines[45]}")
infer_model_key=$(func_parser_key "${lines[46]}")
image_dir_key=$(func_parser_key "${lines[47]}")
infer_img_dir=$(func_parser_value "${lines[47]}")
save_log_key=$(func_parser_key "${lines[48]}")
benchmark_key=$(func_parser_key "${lines[49]}")
benchmark_value=$(func_parser_value "${lines[49]}")
infer_key1=$(func_parser_key "${lines[50]}")
infer_value1=$(func_parser_value "${lines[50]}")
# ---- ours, found by key as the standard scripts find their optional blocks: expected metrics
expected_file=""
for line in "${lines[@]:51}"; do
    [[ $(func_parser_key "${line}") == "expected_metrics" ]] && expected_file=$(func_parser_params "${line}" "${MODE}")
done
IFS='|' read -r -a use_gpu_settings <<< "${use_gpu_list}"
IFS='|' read -r -a mkldnn_settings <<< "${use_mkldnn_list}"
IFS='|' read -r -a thread_settings <<< "${cpu_threads_list}"
IFS='|' read -r -a batch_settings <<< "${batch_size_list}"
IFS='|' read -r -a trt_settings <<< "${use_trt_list}"
IFS='|' read -r -a precision_settings <<< "${precision_list}"

# prepare.sh records the mode it prepared test_tipc/data/ for; another mode's data would give numbers
# that mean nothing.
DATA_DIR=test_tipc/data
prepared=$(cat "${DATA_DIR}/mode.txt" 2>/dev/null)
if [[ ${prepared} != "${MODE}" ]]; then
    echo "test_train_inference_python.sh: test_tipc/data/ is prepared for '${prepared:-nothing}', not ${MODE}; run: bash test_tipc/prepare.sh ${1} ${MODE}" >&2
    exit 2
fi

LOG_PATH=./test_tipc/output/${model_name}/${MODE}
rm -rf "${LOG_PATH}"   # the log describes this run only
mkdir -p "${LOG_PATH}"
status_log=${LOG_PATH}/results_python.log
: > "${status_log}"
has_cuda=false
func_paddle_has_cuda "${python}" && has_cuda=true
runs=0
failures=0

# Runs one command (which redirects its own output to `log`), writes its status line and counts it.
function run_step() {
    local cmd=$1 log=$2 status
    eval "${cmd}"
    status=$?
    runs=$((runs + 1))
    if (( status != 0 )); then
        echo "---- last lines of ${log}:"
        tail -n 15 "${log}"
    fi
    status_check "${status}" "${cmd}" "${status_log}" "${model_name}" "${log}" || { failures=$((failures + 1)); return 1; }
}

function note_skip() {
    echo "Skipped - $*" | tee -a "${status_log}"
}

# Compares a step's metrics with test_tipc/results/ (modes with expected values) and, for the predictor,
# with the same run's evaluation (when there was one).
function compare_step() {
    local step=$1 log=$2 reference=${3:-} precision=${4:-fp32} args=""
    [[ -n ${expected_file} ]] && args="--expected ${expected_file} --data ${DATA_DIR}"
    [[ -n ${reference} ]] && args+=" --reference ${reference} --precision ${precision}"
    [[ -z ${args} ]] && return 0
    local compare_log=${log%.log}_compare.log
    # A failed comparison shows its lines through run_step; a passed one shows them here.
    run_step "${python} test_tipc/compare_results.py --step ${step} --log ${log} ${args} > ${compare_log} 2>&1" \
        "${compare_log}" && cat "${compare_log}"
}

# Every inference setting of the config on one exported model, named and ordered as the standard
# func_inference names and orders them. eval_log: the same run's evaluation, for the agreement check.
function func_inference() {
    local _python=$1 _script=$2 _model_dir=$3 _log_path=$4 _img_dir=$5 _flag_quant=${6:-False} eval_log=${7:-}
    local use_gpu use_mkldnn threads batch_size precision use_trt _save_log_path command
    local set_model_dir set_infer_data set_benchmark set_infer_params1
    set_model_dir=$(func_set_params "${infer_model_key}" "${_model_dir}")
    set_infer_data=$(func_set_params "${image_dir_key}" "${_img_dir}")
    set_benchmark=$(func_set_params "${benchmark_key}" "${benchmark_value}")
    set_infer_params1=$(func_set_params "${infer_key1}" "${infer_value1}")
    for use_gpu in "${use_gpu_settings[@]}"; do
        if [[ ${use_gpu} == "False" || ${use_gpu} == "cpu" ]]; then
            if [[ ${_flag_quant} != "True" && " ${precision_settings[*]} " == *" fp16 "* ]]; then
                # The standard scripts run these rows (with oneDNN on); infer.py --skip_unavailable skips them.
                note_skip "inference on cpu in fp16: fp16 needs a GPU"
            fi
            for use_mkldnn in "${mkldnn_settings[@]}"; do
                for threads in "${thread_settings[@]}"; do
                    for batch_size in "${batch_settings[@]}"; do
                        for precision in "${precision_settings[@]}"; do
                            [[ ${_flag_quant} == "True" && ${precision} != "int8" ]] && continue  # as the standard
                            [[ ${precision} == "fp16" ]] && continue  # said above
                            _save_log_path=${_log_path}/python_infer_cpu_usemkldnn_${use_mkldnn}_threads_${threads}_precision_${precision}_batchsize_${batch_size}.log
                            command="${_python} ${_script} ${use_gpu_key}=${use_gpu} $(func_set_params "${use_mkldnn_key}" "${use_mkldnn}")"
                            command+=" $(func_set_params "${cpu_threads_key}" "${threads}") ${set_model_dir}"
                            command+=" $(func_set_params "${batch_size_key}" "${batch_size}")"
                            command+=" $(func_set_params "${save_log_key}" "${_save_log_path%.log}") ${set_infer_data}"
                            command+=" ${set_benchmark} $(func_set_params "${precision_key}" "${precision}") ${set_infer_params1}"
                            command+=" > ${_save_log_path} 2>&1"
                            run_step "${command}" "${_save_log_path}" \
                                && compare_step infer "${_save_log_path}" "${eval_log}" "${precision}"
                        done
                    done
                done
            done
        elif [[ ${use_gpu} == "True" || ${use_gpu} == "gpu" ]]; then
            if [[ ${has_cuda} != true ]]; then
                note_skip "inference on gpu (TensorRT ${use_trt_list}, precision ${precision_list}): this Paddle is built without CUDA"
                continue
            fi
            for use_trt in "${trt_settings[@]}"; do
                for precision in "${precision_settings[@]}"; do
                    [[ ${_flag_quant} == "False" && ${precision} == *int8* ]] && continue
                    # Without TensorRT the GPU predictor computes in fp32 whatever the precision says.
                    [[ (${precision} == *fp16* || ${precision} == *int8*) && ${use_trt} == "False" ]] && continue
                    for batch_size in "${batch_settings[@]}"; do
                        _save_log_path=${_log_path}/python_infer_gpu_usetrt_${use_trt}_precision_${precision}_batchsize_${batch_size}.log
                        command="${_python} ${_script} ${use_gpu_key}=${use_gpu} $(func_set_params "${use_trt_key}" "${use_trt}")"
                        command+=" $(func_set_params "${precision_key}" "${precision}") ${set_model_dir}"
                        command+=" $(func_set_params "${batch_size_key}" "${batch_size}") ${set_infer_data} ${set_benchmark}"
                        command+=" ${set_infer_params1} $(func_set_params "${save_log_key}" "${_save_log_path%.log}")"
                        command+=" > ${_save_log_path} 2>&1"
                        run_step "${command}" "${_save_log_path}" \
                            && compare_step infer "${_save_log_path}" "${eval_log}" "${precision}"
                    done
                done
            done
        else
            note_skip "inference on '${use_gpu}': only cpu and gpu are supported"
        fi
    done
}

if [[ ${MODE} == "whole_infer" ]]; then
    env=""
    [[ -n ${GPUID} ]] && env="CUDA_VISIBLE_DEVICES=${GPUID} "
    # Ours: the standard whole_infer runs the predictor only; the weights prepare.sh exported are also
    # evaluated, so that the predictor's PSNR can be checked against test.py's.
    eval_log=""
    if [[ ${eval_py} != "null" && -n ${GPEN_WEIGHTS:-} ]]; then
        eval_log=${LOG_PATH}/whole_infer_eval.log
        device=cpu
        [[ ${has_cuda} == true ]] && device=gpu
        cmd="${env}${python} ${eval_py} $(func_set_params "${pretrain_model_key}" "${GPEN_WEIGHTS}")"
        cmd+=" $(func_set_params "${train_use_gpu_key}" "${device}") $(func_set_params "${eval_key1}" "${eval_value1}")"
        run_step "${cmd} > ${eval_log} 2>&1" "${eval_log}" || eval_log=""
    fi
    IFS='|' read -r -a infer_models <<< "${infer_model_dir_list}"
    IFS='|' read -r -a infer_run_exports <<< "${infer_export_list}"
    IFS='|' read -r -a infer_quant_flags <<< "${infer_is_quant_list}"
    for Count in "${!infer_models[@]}"; do
        infer_model=${infer_models[Count]}
        save_infer_dir=${infer_model}
        if [[ ${infer_run_exports[Count]:-null} != "null" ]]; then
            export_log_path=${LOG_PATH}/_export_${Count}.log
            export_cmd="${python} ${infer_run_exports[Count]} $(func_set_params "${export_weight_key}" "${infer_model}")"
            export_cmd+=" $(func_set_params "${save_infer_key}" "${save_infer_dir}") > ${export_log_path} 2>&1"
            if ! run_step "${export_cmd}" "${export_log_path}"; then
                note_skip "inference of ${infer_model}: the export failed"
                continue
            fi
        fi
        func_inference "${env}${python}" "${inference_py}" "${save_infer_dir}" "${LOG_PATH}" "${infer_img_dir}" \
            "${infer_quant_flags[Count]:-False}" "${eval_log}"
    done
else
    IFS='|' read -r -a gpus <<< "${gpu_list}"
    IFS='|' read -r -a use_gpu_values <<< "${train_use_gpu_value}"
    IFS='|' read -r -a autocasts <<< "${autocast_list}"
    IFS='|' read -r -a trainer_names <<< "${trainer_list}"
    for Count in "${!gpus[@]}"; do
        gpu=${gpus[Count]}
        train_use_gpu=${use_gpu_values[Count]:-}
        if [[ ${gpu} == "-1" && ${MODE} == "whole_train_whole_infer" ]]; then
            note_skip "training on cpu (gpu_list -1): whole_train_whole_infer trains the 256 model on GPUs only"
            continue
        fi
        if [[ ${gpu} != "-1" && ${has_cuda} != true ]]; then
            note_skip "training on gpu ${gpu} (and its evaluation, export and inference): this Paddle is built without CUDA"
            continue
        fi
        env=""
        [[ ${gpu} != "-1" ]] && env="CUDA_VISIBLE_DEVICES=${gpu} "
        for autocast in "${autocasts[@]}"; do
            for trainer in "${trainer_names[@]}"; do
                run_train=${trainers[${trainer}]:-null}
                run_export=${exports[${trainer}]:-null}
                if [[ ${run_train} == "null" ]]; then
                    note_skip "trainer ${trainer}: no command for it in ${FILENAME}"
                    continue
                fi
                flag_quant=False
                [[ ${trainer} == "pact_train" ]] && flag_quant=True
                set_autocast=$(func_set_params "${autocast_key}" "${autocast}")
                set_epoch=$(func_set_params "${epoch_key}" "${epoch_num}")
                set_pretrain=$(func_set_params "${pretrain_model_key}" "${pretrain_model_value}")
                set_batchsize=$(func_set_params "${train_batch_key}" "${train_batch_value}")
                set_train_params1=$(func_set_params "${train_param_key1}" "${train_param_value1}")
                set_use_gpu=$(func_set_params "${train_use_gpu_key}" "${train_use_gpu}")
                nodes=1
                save_log=${LOG_PATH}/${trainer}_gpus_${gpu}_autocast_${autocast}
                set_save_model=$(func_set_params "${save_model_key}" "${save_log}")
                launcher=""
                if [[ ${gpu} == *,* ]]; then
                    # The launcher's own logs go into the run folder, not into the repository's log/.
                    launcher="-m paddle.distributed.launch --gpus=${gpu} --log_dir=${save_log}/launch "
                fi
                train_log=${save_log}.log
                cmd="${env}${python} ${launcher}${run_train} ${set_use_gpu} ${set_save_model} ${set_epoch}"
                cmd+=" ${set_pretrain} ${set_autocast} ${set_batchsize} ${set_train_params1} > ${train_log} 2>&1"
                if ! run_step "${cmd}" "${train_log}"; then
                    note_skip "evaluation, export and inference of ${trainer}_gpus_${gpu}: the training failed"
                    continue
                fi
                eval_log=""
                if [[ ${eval_py} != "null" ]]; then
                    eval_log_path=${LOG_PATH}/${trainer}_gpus_${gpu}_autocast_${autocast}_nodes_${nodes}_eval.log
                    eval_cmd="${env}${python} ${eval_py} $(func_set_params "${pretrain_model_key}" "${save_log}/${train_model_name}")"
                    eval_cmd+=" ${set_use_gpu} $(func_set_params "${eval_key1}" "${eval_value1}") > ${eval_log_path} 2>&1"
                    if run_step "${eval_cmd}" "${eval_log_path}"; then
                        eval_log=${eval_log_path}
                        compare_step eval "${eval_log_path}"
                    fi
                fi
                if [[ ${run_export} == "null" ]]; then
                    continue
                fi
                export_log_path=${LOG_PATH}/${trainer}_gpus_${gpu}_autocast_${autocast}_nodes_${nodes}_export.log
                export_cmd="${python} ${run_export} $(func_set_params "${export_weight_key}" "${save_log}/${train_model_name}")"
                export_cmd+=" $(func_set_params "${save_infer_key}" "${save_log}") > ${export_log_path} 2>&1"
                if ! run_step "${export_cmd}" "${export_log_path}"; then
                    note_skip "inference of ${trainer}_gpus_${gpu}: the export failed"
                    continue
                fi
                infer_model_dir=${save_log}
                if [[ -n ${inference_dir} && ${inference_dir} != "null" && ${inference_dir} != "##" ]]; then
                    infer_model_dir=${save_log}/${inference_dir}
                fi
                func_inference "${env}${python}" "${inference_py}" "${infer_model_dir}" "${LOG_PATH}" \
                    "${train_infer_img_dir}" "${flag_quant}" "${eval_log}"
            done
        done
    done
fi

echo "${MODE}: ${runs} commands, ${failures} failed, ${SECONDS} s; status lines in ${status_log}"
if (( runs == 0 )); then
    echo "test_train_inference_python.sh: nothing ran in ${MODE} (see the Skipped lines in ${status_log})" >&2
    exit 1
fi
(( failures == 0 ))
