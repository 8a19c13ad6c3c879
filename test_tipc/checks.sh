#!/usr/bin/env bash
# Checks shared by prepare.sh and test_train_inference_python.sh that the standard common_func.sh does
# not have. They live here, not in common_func.sh, so that PaddleOCR's or PaddleGAN's common_func.sh
# dropped over ours leaves prepare.sh working.

# The CONFIG MODE arguments every TIPC script of ours takes: checked with one line on stderr (status 2),
# and CONFIG printed as an absolute path (the scripts cd to the repository).
function func_check_arguments() {
    local script=$1 config=$2 mode=$3
    local modes="lite_train_lite_infer, lite_train_whole_infer, whole_train_whole_infer, whole_infer"
    if [[ -z ${config} || -z ${mode} ]]; then
        echo "usage: bash test_tipc/${script} CONFIG MODE   (MODE: ${modes})" >&2
        return 2
    fi
    case ${mode} in
        lite_train_lite_infer | lite_train_whole_infer | whole_train_whole_infer | whole_infer) ;;
        *) echo "${script}: unknown mode '${mode}' (use ${modes})" >&2
           return 2 ;;
    esac
    if [[ ! -f ${config} ]]; then
        echo "${script}: config file not found: ${config}" >&2
        return 2
    fi
    echo "$(cd "$(dirname "${config}")" && pwd)/$(basename "${config}")"
}

# Is this Paddle built with CUDA (and so able to train / infer on a GPU)?
function func_paddle_has_cuda() {
    local python=${1:-python}
    [[ $(${python} -c "import paddle; print(paddle.device.is_compiled_with_cuda())" 2>/dev/null) == "True" ]]
}
