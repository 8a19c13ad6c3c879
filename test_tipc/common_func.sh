#!/usr/bin/env bash
# Helpers shared by prepare.sh and test_train_inference_python.sh.
#
# A TIPC config file is read by line position; each line is `key:value`. A value may depend on the mode:
#     --max_iter:lite_train_lite_infer=40|whole_train_whole_infer=200000
# and a plain value may be a list of settings to run one after the other:
#     --cpu_threads:1|2
# `null` (as key or value) means "leave this out of the command".

# The CONFIG MODE arguments every TIPC script takes: checked (usage, mode, file) with one line on stderr,
# and CONFIG printed as an absolute path (the scripts cd to the repo).
function func_check_arguments() {
    local script=$1 config=$2 mode=$3
    if [[ -z ${config} || -z ${mode} ]]; then
        echo "usage: bash test_tipc/${script} CONFIG MODE   (MODE: lite_train_lite_infer, whole_train_whole_infer, whole_infer)" >&2
        return 2
    fi
    case ${mode} in
        lite_train_lite_infer | whole_train_whole_infer | whole_infer) ;;
        *) echo "${script}: unknown mode '${mode}' (use lite_train_lite_infer, whole_train_whole_infer or whole_infer)" >&2
           return 2 ;;
    esac
    if [[ ! -f ${config} ]]; then
        echo "${script}: config file not found: ${config}" >&2
        return 2
    fi
    echo "$(cd "$(dirname "${config}")" && pwd)/$(basename "${config}")"
}

# The text before the first ':' (values may themselves contain ':').
function func_parser_key() {
    local line=$1
    echo "${line%%:*}"
}

# The text after the first ':'.
function func_parser_value() {
    local line=$1
    if [[ ${line} != *:* ]]; then
        echo ""
        return
    fi
    echo "${line#*:}"
}

# The value of a `mode=value|mode=value` line for MODE, or `null` when MODE is not listed. The value is
# everything after the first '=', so it may hold '=' itself (e.g. `-o train.log_freq=10`). Environment
# variables written as ${NAME} are expanded here, so the logged commands show the real paths.
function func_parser_params() {
    local line=$1 mode=$2 value entry
    value=$(func_parser_value "${line}")
    local IFS='|'
    for entry in ${value}; do
        if [[ ${entry%%=*} == "${mode}" ]]; then
            func_expand_vars "${entry#*=}"
            return
        fi
    done
    echo "null"
}

# ${NAME} / $NAME in a config value, expanded from the environment (unset -> empty). Expanded text is
# not scanned again.
function func_expand_vars() {
    local rest=$1 done_text=""
    while [[ ${rest} =~ \$\{?([A-Za-z_][A-Za-z0-9_]*)\}? ]]; do
        local whole=${BASH_REMATCH[0]} name=${BASH_REMATCH[1]}
        done_text+="${rest%%"${whole}"*}${!name-}"
        rest=${rest#*"${whole}"}
    done
    echo "${done_text}${rest}"
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

# Is this Paddle built with CUDA (and so able to train / infer on a GPU)?
function func_paddle_has_cuda() {
    local python=${1:-python}
    [[ $(${python} -c "import paddle; print(paddle.device.is_compiled_with_cuda())" 2>/dev/null) == "True" ]]
}

# Writes the TIPC status line of one command to the run log (and the console) and returns the command's
# status, so that callers can count failures:   status_check $? "${cmd}" "${status_log}"
function status_check() {
    local last_status=$1 run_command=$2 run_log=$3
    if [[ ${last_status} -eq 0 ]]; then
        echo "Run successfully with command - ${run_command}!" | tee -a "${run_log}"
    else
        echo "Run failed with command - ${run_command}!" | tee -a "${run_log}"
    fi
    return "${last_status}"
}
