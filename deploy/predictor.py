"""Static export and Paddle Inference predictors, for the generator and any other network.

* `export(layer, input_shape, prefix)` traces `layer.forward` with `paddle.jit.to_static` (batch
  dimension dynamic) and writes `prefix.json` + `prefix.pdiparams` (Paddle 3; releases before 3.0 and
  the legacy IR write `prefix.pdmodel`).
* `write_model_info` / `read_model_info`: a small YAML beside them (`prefix.yml`) says what the model
  expects (size, layout, value range) and which architecture it is, as Paddle's deployment suites do;
  the program file itself leaves the spatial size open until the first run.
* `Predictor(model_file, params_file, ...)` runs such files with Paddle Inference: CPU (oneDNN on or
  off, thread count) or GPU (optionally TensorRT fp32/fp16).

Facts about Paddle 3.3's CPU predictor with oneDNN that shaped the layer forms (model/layers.py):
its leaky_relu segfaults, a 2-D pad in the graph corrupts the heap, and a matmul whose 4-D operand comes
straight from a chain of oneDNN ops (a fused conv + bias + activation) returns wrong values.
Outputs are therefore always compared with dygraph in the tests, over fresh processes.
"""
import contextlib
import os
import sys
import tempfile
import warnings

import numpy as np
import paddle

from utils.errors import UserError


class _Outputs(paddle.nn.Layer):
    """Wrap a layer whose forward returns a tuple; export only the first element (the image)."""

    def __init__(self, layer, index):
        super().__init__()
        self.layer = layer
        self.index = index

    def forward(self, x):
        out = self.layer(x)
        return out[self.index] if self.index is not None else out


def model_file_for(prefix):
    """The program file paddle.jit.save wrote for `prefix` (.json with PIR, .pdmodel otherwise)."""
    for ext in (".json", ".pdmodel"):
        if os.path.isfile(prefix + ext):
            return prefix + ext
    raise UserError(f"no exported model at {prefix} (expected {prefix}.json or {prefix}.pdmodel); "
                    f"run export_model.py first")


def export(layer, input_shape, prefix, output_index=None):
    """Trace `layer` for inputs (N, *input_shape) with any N and save it; returns the files written."""
    modes = [(sub, sub.training) for sub in [layer] + list(layer.sublayers())]
    layer.eval()
    wrapped = _Outputs(layer, output_index)
    spec = [paddle.static.InputSpec([None] + list(input_shape), "float32", "x")]
    static = paddle.jit.to_static(wrapped, input_spec=spec, full_graph=True)
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    with warnings.catch_warnings():
        # Tracing asks tensors for a device the static program does not have yet; harmless.
        warnings.filterwarnings("ignore", message="Tensor do not have 'place' interface")
        paddle.jit.save(static, prefix)
    for sub, training in modes:  # restore each sublayer's own mode (a frozen network stays in eval)
        sub.training = training
    model_file = model_file_for(prefix)
    return [model_file, prefix + ".pdiparams"]


@contextlib.contextmanager
def _stdout_to_devnull():
    """Silence the C++ side's stdout (file descriptor 1) for a moment."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def write_model_info(prefix, model_cfg):
    import yaml

    info = {"model": "GPEN", "size": model_cfg.size, "channel_multiplier": model_cfg.channel_multiplier,
            "narrow": model_cfg.narrow, "style_dim": model_cfg.style_dim, "n_mlp": model_cfg.n_mlp,
            "input": {"name": "x", "layout": "NCHW", "channels": "RGB", "range": [-1.0, 1.0],
                      "normalization": "x / 127.5 - 1 for 8-bit images"},
            "output": {"layout": "NCHW", "channels": "RGB", "range": [-1.0, 1.0], "clip": True}}
    with open(prefix + ".yml", "w") as f:
        yaml.safe_dump(info, f, sort_keys=False)
    return prefix + ".yml"


def read_model_info(model_file):
    """The YAML written beside an exported model (same stem)."""
    import yaml

    path = os.path.splitext(model_file)[0] + ".yml"
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: it is written by export_model.py beside the model and says the "
                        f"input size; re-export the model")
    with open(path) as f:
        return yaml.safe_load(f)


def _process_threads():
    try:
        return int(os.environ.get("OMP_NUM_THREADS", "0")) or (os.cpu_count() or 1)
    except ValueError:
        return os.cpu_count() or 1


class Predictor:
    """A Paddle Inference predictor for a one-input, one-output model.

    device: 'cpu' or 'gpu'. On CPU: threads (0 = the process's OMP_NUM_THREADS) and mkldnn (oneDNN
    kernels: the fast path on CPU). On GPU: tensorrt with precision 'fp32' | 'fp16', for batches of up to
    max_batch images of input_size².
    """

    def __init__(self, model_file, params_file, device="cpu", threads=0, mkldnn=True, tensorrt=False,
                 precision="fp32", gpu_memory_mb=1000, input_size=None, max_batch=8):
        from paddle import inference

        for path in (model_file, params_file):
            if not os.path.isfile(path):
                raise UserError(f"inference model file not found: {path}")
        config = inference.Config(model_file, params_file)
        if device == "gpu":
            if not paddle.device.is_compiled_with_cuda():
                raise UserError("--device gpu needs paddlepaddle-gpu; this Paddle is the CPU build")
            config.enable_use_gpu(gpu_memory_mb, 0)
            if tensorrt:
                if not input_size:
                    raise UserError("TensorRT needs the model's input size (gpen.yml beside the model)")
                config.enable_tensorrt_engine(
                    workspace_size=1 << 30, max_batch_size=max_batch, min_subgraph_size=3,
                    precision_mode=(inference.PrecisionType.Half if precision == "fp16"
                                    else inference.PrecisionType.Float32),
                    use_static=False, use_calib_mode=False)
                # The batch is dynamic: TensorRT needs its range (input "x" of export()).
                shape = [3, input_size, input_size]
                config.set_trt_dynamic_shape_info({"x": [1] + shape}, {"x": [max_batch] + shape}, {"x": [1] + shape})
        else:
            if tensorrt or precision != "fp32":
                raise UserError("TensorRT and fp16 need --device gpu; on CPU use fp32 (with --enable_mkldnn)")
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads or _process_threads())
            if mkldnn:
                config.enable_mkldnn()
            else:
                config.disable_mkldnn()
        config.disable_glog_info()
        try:
            self._predictor = inference.create_predictor(config)
        except Exception as err:  # noqa: BLE001  (a corrupt or foreign model file)
            raise UserError(f"{model_file}: cannot build a predictor ({str(err).strip().splitlines()[-1]})") from None
        self._threads = _process_threads()
        self._first_run = True
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])


    def __call__(self, x):
        from paddle.base import core

        x = np.ascontiguousarray(x, dtype=np.float32)
        self._input.reshape(list(x.shape))
        self._input.copy_from_cpu(x)
        if self._first_run:  # Paddle's oneDNN set-up prints a debug line to stdout on the first run
            with _stdout_to_devnull():
                self._predictor.run()
            self._first_run = False
        else:
            self._predictor.run()
        # A oneDNN run leaves the calling thread's MKL at 1 thread, which makes later dygraph GEMMs in this
        # process slower and different in the last bits: restore the process setting.
        core.set_num_threads(self._threads)
        return self._output.copy_to_cpu()

    @classmethod
    def from_layer(cls, layer, input_shape, output_index=None, **options):
        """Export `layer` to a temporary folder and load it (dygraph in, predictor out)."""
        with tempfile.TemporaryDirectory(prefix="gpen_export_") as folder:
            prefix = os.path.join(folder, "model")
            model_file, params_file = export(layer, input_shape, prefix, output_index)
            return cls(model_file, params_file, **options)
