"""Test set-up: CPU threads and MKL's kernel choice are fixed before anything imports paddle,
`need_shared` locates the read-only test material beside the repo (skipping when it is absent), and
`tiny_generator_weights` is the small GPEN the test.py end-to-end tests evaluate."""
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


def need_mtcnn_package():
    """Skip the calling test unless the `mtcnn` package (the default detector's weights, with lz4) is installed."""
    pytest.importorskip("lz4", reason="the MTCNN weights come with the `mtcnn` package: pip install mtcnn==1.0.0")
    from faces.mtcnn_weights import default_weight_dir
    from utils.errors import UserError

    try:
        default_weight_dir()
    except UserError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def tiny_generator_weights(tmp_path_factory):
    """A 64-px GPEN (narrow 0.0625) saved as .pdparams, its encoder features let through as in a trained
    model (the noise weights start at 0)."""
    import paddle

    from model import FullGenerator

    paddle.seed(7)
    generator = FullGenerator(64, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.0625)
    for layer in generator.generator.convs:
        layer.noise.weight.set_value(paddle.to_tensor([0.5]))
    path = tmp_path_factory.mktemp("g") / "G.pdparams"
    paddle.save(generator.state_dict(), str(path))
    return str(path)
