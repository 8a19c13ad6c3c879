#!/usr/bin/env bash
# The test suite, after installing what it needs when it is missing:
#     bash tools/test.sh [pytest arguments]        (default: every test, quietly)
# Setup as tools/quickstart.sh's (tools/setup_env.sh: requirements.txt and requirements-dev.txt, into the
# active environment, ./.venv, or a new ./.venv — it says which). Tests that need the shared test material
# (../shared beside the clone) skip with their reason, and the last line says how many did; with
# GPEN_REQUIRE_SHARED=1 (CI) they fail instead (tests/conftest.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source tools/setup_env.sh requirements.txt requirements-dev.txt
if (( $# == 0 )); then
    set -- -q
fi
exec "${PYTHON}" -m pytest "$@"
