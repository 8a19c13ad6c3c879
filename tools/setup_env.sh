#!/usr/bin/env bash
# Sourced by tools/quickstart.sh and tools/test.sh (and .ci/run):
#     source tools/setup_env.sh requirements.txt [requirements-dev.txt ...]
# Makes sure the Python that runs the project has what the requirement files list and the repository
# installed (`pip install -e .`), installing only what is missing and skipping the step when nothing is.
#
# Which Python, in this order:
#   1. an active virtual environment or conda environment ($VIRTUAL_ENV / $CONDA_PREFIX): installs go there;
#   2. ./.venv, made by an earlier run of these scripts (git-ignored): it is activated;
#   3. python3 (or python) on PATH, when it already has everything: nothing is installed;
#   4. otherwise a new venv ./.venv is created from it and everything is installed there (a system Python
#      is never modified: many refuse pip, PEP 668).
# Afterwards `python` on PATH is that interpreter (TIPC's config calls `python`), $PYTHON names it, and
# SETUP_SECONDS says how long this took.
# Python >= 3.10 is needed; anything wrong is one line on stderr and status 1.

_setup_started=$(date +%s.%N)
_setup_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

function _setup_fail() {
    echo "setup: $*" >&2
    return 1
}

function _setup_python_ok() {   # is $1 a Python >= 3.10?
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null
}

function _setup_main() {
    local where python unmet requirement files=()
    for requirement in "$@"; do
        files+=("${_setup_repo}/${requirement}")
    done
    if [[ -n ${VIRTUAL_ENV:-} || -n ${CONDA_PREFIX:-} ]]; then
        python=$(command -v python) || _setup_fail "no python in the active environment ${VIRTUAL_ENV:-${CONDA_PREFIX}}" || return 1
        where="the active environment ${VIRTUAL_ENV:-${CONDA_PREFIX}}"
    elif [[ -x ${_setup_repo}/.venv/bin/python ]]; then
        # shellcheck disable=SC1091
        source "${_setup_repo}/.venv/bin/activate"
        python=${_setup_repo}/.venv/bin/python
        where="${_setup_repo}/.venv (made by an earlier run)"
    else
        python=$(command -v python3 || command -v python) \
            || _setup_fail "no python3 on PATH; install Python 3.10 or newer" || return 1
        where="${python} (not a virtual environment)"
    fi
    _setup_python_ok "${python}" \
        || _setup_fail "${python} is Python $("${python}" -c 'import platform; print(platform.python_version())' 2>/dev/null); the project needs 3.10 or newer" \
        || return 1

    mapfile -t unmet < <("${python}" "${_setup_repo}/tools/check_requirements.py" "${files[@]}")
    # oneDNN's C++ headers, for the oneDNN convolution model/conv.py compiles (installed with --no-deps).
    local headers=()
    mapfile -t headers < <("${python}" "${_setup_repo}/tools/check_requirements.py" "${_setup_repo}/requirements-onednn.txt")
    local editable=yes
    # The repository itself: importable from anywhere (tools/, test_tipc/) as this checkout.
    (cd / && "${python}" -c "import os, sys, utils; sys.exit(os.path.dirname(os.path.dirname(os.path.abspath(utils.__file__))) != sys.argv[1])" \
        "${_setup_repo}" 2>/dev/null) && editable=no

    local system=no
    [[ ${where} == *"not a virtual environment"* ]] && system=yes
    if (( ${#unmet[@]} + ${#headers[@]} == 0 )) && [[ ${system} == yes && ${editable} == yes ]]; then
        # A system Python is never modified (many refuse pip, PEP 668); the two commands do not need the
        # checkout installed (scripts run from its root, pytest puts the root on sys.path).
        echo "setup: nothing to install; using ${where}, Python $("${python}" -c 'import platform; print(platform.python_version())')" \
             "(this checkout is not pip-installed in it: these commands do not need that, tools/*.py do: pip install -e .)"
    elif (( ${#unmet[@]} + ${#headers[@]} == 0 )) && [[ ${editable} == no ]]; then
        echo "setup: nothing to install; using ${where}, Python $("${python}" -c 'import platform; print(platform.python_version())')"
    else
        if [[ ${system} == yes ]]; then
            echo "setup: ${python} lacks $(( ${#unmet[@]} + ${#headers[@]} )) requirement(s); creating the virtual environment ${_setup_repo}/.venv and installing there"
            "${python}" -m venv "${_setup_repo}/.venv" \
                || _setup_fail "'${python} -m venv' failed (Debian/Ubuntu: apt install python3-venv), or activate a virtual environment first" \
                || return 1
            # shellcheck disable=SC1091
            source "${_setup_repo}/.venv/bin/activate"
            python=${_setup_repo}/.venv/bin/python
            where="${_setup_repo}/.venv (new)"
            "${python}" -m pip install --quiet --upgrade pip || _setup_fail "upgrading pip in ${_setup_repo}/.venv failed" || return 1
            mapfile -t unmet < <("${python}" "${_setup_repo}/tools/check_requirements.py" "${files[@]}")
            mapfile -t headers < <("${python}" "${_setup_repo}/tools/check_requirements.py" "${_setup_repo}/requirements-onednn.txt")
            editable=yes
        fi
        if (( ${#unmet[@]} )); then
            echo "setup: installing into ${where}: ${unmet[*]}"
            "${python}" -m pip install --quiet "${unmet[@]}" \
                || _setup_fail "pip could not install ${unmet[*]} (see pip's message above)" || return 1
        fi
        if (( ${#headers[@]} )); then
            # Headers only: with its dependencies the package would pull Intel's SYCL and OpenCL runtimes.
            echo "setup: installing into ${where} without dependencies: ${headers[*]}"
            "${python}" -m pip install --quiet --no-deps "${headers[@]}" \
                || _setup_fail "pip could not install ${headers[*]} (see pip's message above)" || return 1
        fi
        if [[ ${editable} == yes ]]; then
            echo "setup: installing this checkout into ${where} (pip install -e .)"
            "${python}" -m pip install --quiet --no-deps -e "${_setup_repo}" \
                || _setup_fail "pip install -e ${_setup_repo} failed (see pip's message above)" || return 1
        fi
        mapfile -t unmet < <("${python}" "${_setup_repo}/tools/check_requirements.py" "${files[@]}")
        (( ${#unmet[@]} == 0 )) || _setup_fail "still missing after pip install: ${unmet[*]}" || return 1
    fi
    # TIPC's config and the README's commands say `python`: make it this interpreter.
    local here there
    here=$("${python}" -c 'import os, sys; print(os.path.realpath(sys.executable))')
    there=$(python -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null)
    if [[ ${here} != "${there}" ]]; then
        local shim
        shim=$(mktemp -d)
        ln -s "${here}" "${shim}/python"
        PATH=${shim}:${PATH}
    fi
    PYTHON=${python}
    export PYTHON PATH
}

_setup_main "$@"
_setup_status=$?
SETUP_SECONDS=$(awk -v a="${_setup_started}" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
unset -f _setup_main _setup_fail _setup_python_ok
[[ ${_setup_status} -eq 0 ]]
