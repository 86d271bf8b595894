"""Whether code runs inside a graph capture (``torch.compile``, ``torch.export``, ONNX export, ``torch.jit``).

Heads and losses check their inputs and take shortcuts that read tensor values on the host (``float(x.max())``,
``torch.unique``): cheap and clear eagerly, but a data-dependent branch or shape stops ``torch.export`` (and the
dynamo ONNX exporter built on it), breaks a ``torch.compile`` graph and is frozen into a ``torch.jit.trace``.
Such code asks :func:`capturing_graph` and takes its value-independent path while a graph is captured, as timm
and torchvision do with the same ``torch`` flags.
"""

from __future__ import annotations

import torch

__all__ = ["capturing_graph"]


def capturing_graph() -> bool:
    """True inside ``torch.compile`` and ``torch.export`` (``torch.compiler.is_compiling``, which the dynamo ONNX
    exporter sets as well), ``torch.jit.trace`` / ``torch.jit.script`` and the TorchScript ONNX exporter."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export())
