#!/usr/bin/env bash
# Helpers shared by prepare.sh and test_train_inference_python.sh, with the names and the behaviour of
# the standard TIPC common_func.sh (PaddleOCR, PaddleGAN), so that either set of scripts reads the same
# config. A config line is `key:value`, read by its position in the file; a value may depend on the mode
#     --max_iter:lite_train_lite_infer=40|whole_train_whole_infer=200000
# and a plain value may list settings run one after the other
#     --cpu_threads:1|2
# `null` (as key or value) leaves the option out of the command.

# The text before the first ':'.
function func_parser_key() {
    local line=$1
    echo "${line%%:*}"
}

# The text after the first ':' (the standard scripts stop at a second ':'; our configs have none).
function func_parser_value() {
    local line=$1
    if [[ ${line} != *:* ]]; then
        echo ""
        return
    fi
    echo "${line#*:}"
}

# `key=value` for a command line, or nothing when the key or the value is null/empty.
function func_set_params() {
    local key=$1 value=$2
    if [[ -z ${key} || ${key} == "null" || -z ${value} || ${value} == "null" ]]; then
        echo ""
    else
        echo "${key}=${value}"
    fi
}

# The value of a `mode=value|mode=value` line for MODE (default: the caller's $MODE), or nothing when
# MODE is not listed. The value is everything after the first '=' (the standard scripts stop at a second
# '='; our configs have none).
function func_parser_params() {
    local line=$1 mode=${2:-${MODE:-}} value entry
    value=$(func_parser_value "${line}")
    local IFS='|'
    for entry in ${value}; do
        if [[ ${entry%%=*} == "${mode}" ]]; then
            echo "${entry#*=}"
            return
        fi
    done
    echo ""
}

# The TIPC status line of one command, appended to the run's results_python.log and shown on the console
# (in colour on a terminal, as the standard scripts do; the file gets plain text):
#     status_check $? "${cmd}" "${status_log}" "${model_name}" "${log_path}"
# Returns the command's status, so that callers can count failures.
function status_check() {
    local last_status=$1 run_command=$2 run_log=$3 model_name=$4 log_path=${5:-}
    local line
    if [[ ${last_status} -eq 0 ]]; then
        line="Run successfully with command - ${model_name} - ${run_command} - ${log_path}"
    else
        line="Run failed with command - ${model_name} - ${run_command} - ${log_path}"
    fi
    echo " ${line} " >> "${run_log}"
    if [[ -t 1 ]]; then
        echo -e "\033[33m ${line} \033[0m"
    else
        echo " ${line} "
    fi
    return "${last_status}"
}
