"""Inference engines: how a preprocessed batch becomes logits, chosen by measurement.

`python -m benchmarks.bench` compares them on this machine; the README's Performance section has
its figures from the project's 2-core CPU (the fast engine: 1.06-2.5x the eager path, 0.83-0.97x
ONNX Runtime on the same model, the same verdicts).

- `eager`: the model as trained, NCHW, under `torch.no_grad()`: the naive baseline.
- `fast`: a copy with every convolution fused with its batch-norm (torch.fx), in channels-last
  memory, traced and frozen with TorchScript so oneDNN Graph can fuse conv + add + ReLU chains.
  Weights are frozen into the graph, so a fast engine never sees later changes to the model.
  A model TorchScript cannot trace, or whose trace the tracer warns may be wrong (Python control
  flow or conversions on tensor values, which a trace freezes into constants), falls back to the
  fused eager copy under inference_mode; the engine's `traced` and `fallback_reason` say so and
  the fallback is logged once, when the engine is built.
- `onnxruntime`: the same model exported to ONNX and run by ONNX Runtime (what a user would pick
  instead); optional, it needs the `onnxruntime` and `onnxscript` packages.

Every engine maps a float32 (N, 3, H, W) batch to float32 (N, 2) logits and is used under the
Detector's lock (one pass at a time).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

ENGINES = ("fast", "eager", "onnxruntime")
log = logging.getLogger(__name__)


class EagerEngine:
    """The naive baseline: the model as trained, NCHW, `torch.no_grad()`."""

    name = "eager"

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(batch)


class FastEngine:
    """Fused conv-bn, channels-last, TorchScript-frozen with oneDNN Graph fusion.

    `example_shape` (N, 3, H, W) is traced and run twice at construction: oneDNN Graph compiles
    its fused kernels on the first calls of each input shape, so the first verdict is not the
    slow one. Other batch sizes work too; each new shape pays that compile once.
    """

    name = "fast"

    def __init__(self, model: nn.Module, example_shape: tuple[int, int, int, int]) -> None:
        fused = fuse_conv_bn(model).to(memory_format=torch.channels_last)
        example = torch.zeros(example_shape).contiguous(memory_format=torch.channels_last)
        self.traced, self.fallback_reason = True, None
        try:
            self.module: Callable[[torch.Tensor], torch.Tensor] = trace_frozen(fused, example)
            for _ in range(2):
                self(example)
        except Exception as exc:  # a model TorchScript cannot trace still gets the eager speed-ups
            self.traced, self.module = False, fused
            self.fallback_reason = f"{type(exc).__name__}: {_one_line(exc)}"
            log.warning(
                "fast engine: %s could not be traced with TorchScript (%s); running the fused "
                "eager copy instead",
                type(model).__name__,
                self.fallback_reason,
            )
            for _ in range(2):
                self(example)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.contiguous(memory_format=torch.channels_last)
        if self.traced:
            with torch.no_grad():
                return self.module(batch)
        with torch.inference_mode():
            return self.module(batch)


class UntraceableError(RuntimeError):
    """The tracer warned that its trace may not compute what the model computes."""


def trace_frozen(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """`module` traced on `example` and frozen, with oneDNN Graph fusion on. Raises
    `UntraceableError` when the tracer warns that the trace may be incorrect (a Python branch
    or number taken from a tensor's value becomes a constant of the trace), so that no caller
    silently gets a model that answers every image as it answered `example`."""
    # The fuser is a process-wide switch read when a graph is optimised; it only affects
    # TorchScript graphs, and this project runs no others.
    torch.jit.enable_onednn_fusion(True)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's own deprecation notices
        warnings.simplefilter("always", torch.jit.TracerWarning)
        frozen = torch.jit.freeze(torch.jit.trace(module, example, check_trace=False))
    doubts = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    if doubts:
        raise UntraceableError(f"the tracer warned: {_one_line(doubts[0].message)}")
    return frozen


def _one_line(message: object, limit: int = 300) -> str:
    """The message on one line, at most `limit` characters (some embed a printed tensor)."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OnnxRuntimeEngine:
    """The model exported with torch.onnx (dynamic batch size) and run by ONNX Runtime on CPU,
    with as many intra-op threads as torch uses."""

    name = "onnxruntime"

    def __init__(self, model: nn.Module, example_shape: tuple[int, int, int, int]) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise RuntimeError(
                "ONNX Runtime is not installed: pip install onnxruntime onnx onnxscript"
            ) from None
        self.onnx_bytes = export_onnx(model, example_shape)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3  # errors only
        self.session = onnxruntime.InferenceSession(
            self.onnx_bytes, options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


def export_onnx(model: nn.Module, example_shape: tuple[int, int, int, int]) -> bytes:
    """The ONNX bytes of `model` (eval mode, batch size dynamic) from torch.onnx's exporter."""
    example = torch.zeros(example_shape)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            copy.deepcopy(model).eval(),
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    return program.model_proto.SerializeToString()


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with each Conv2d + BatchNorm2d pair folded into one
    convolution (torch.fx); the copy, unfused, when the model cannot be traced by fx."""
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()
    try:
        return fuse(model)
    except Exception:  # fx cannot trace data-dependent control flow: keep the plain copy
        return model


def build_engine(
    name: str, model: nn.Module, example_shape: tuple[int, int, int, int]
) -> EagerEngine | FastEngine | OnnxRuntimeEngine:
    """The engine `name` (one of ENGINES) for `model`, warmed up on `example_shape`."""
    if name == "eager":
        return EagerEngine(model)
    if name == "fast":
        return FastEngine(model, example_shape)
    if name == "onnxruntime":
        return OnnxRuntimeEngine(model, example_shape)
    raise ValueError(f"unknown inference engine {name!r}; valid: {list(ENGINES)}")
