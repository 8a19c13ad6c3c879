"""Test set-up: CPU threads and MKL's kernel choice are fixed before anything imports paddle, and
`need_shared` locates the read-only test material beside the repo (skipping when it is absent)."""
from pathlib import Path

import pytest

from utils.runtime import prepare_cpu

prepare_cpu(2)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def need_shared(*parts):
    """Path of ../shared/<parts>; skips the calling test when it is absent (e.g. a fresh clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the shared test material ../shared/{'/'.join(parts)}, which is not beside this clone")
    return path
