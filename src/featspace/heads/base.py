"""The head contract, its output type, input validation and the registry.

A *head* owns everything a method adds after the embedding: learnable class weights, signatures or
centroids, fixed centroids, the loss and the decision rule (``shared/DESIGN.md``). Every head is an
``nn.Module`` with

- ``forward(embeddings [B, d], labels [B] int64) -> HeadOutput(loss, logits, parts)``
- ``predict(embeddings [B, d]) -> scores [B, C]`` whose argmax is the prediction
- ``start_epoch(epoch)`` called by a training loop before each epoch (1-based)

Subclasses implement ``compute(x, y)`` and ``scores(x)``; ``forward`` and ``predict`` validate their
inputs first, so every head raises the same clear ``ValueError`` on a wrong shape, an out-of-range label
or a non-finite embedding instead of returning a NaN loss. The checks are skipped while a graph is being
captured (``torch.compile``, ``torch.export``, ONNX export, ``torch.jit.trace``: see
``featspace.functional.capturing_graph``): they read values on the host (a device sync), which a graph cannot
hold, as timm's and torchvision's checks skip themselves there.

Heads register themselves with ``@register_head("name")`` in :data:`HEADS` (a ``featspace.registry.Registry``);
``build(name, embedding_dim, num_classes, **hparams)`` and ``names()`` sit on top, as in timm.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import torch
from torch import Tensor, nn

from featspace import distributed
from featspace.functional.capture import capturing_graph
from featspace.heads.hparams import MAX_WEIGHT, integer
from featspace.registry import Registry, parameters_of

__all__ = [
    "HEADS",
    "Head",
    "HeadOutput",
    "build",
    "default_hparams",
    "describe",
    "get_head_class",
    "hparams_of",
    "names",
    "register_head",
    "upcast_half",
]


@dataclass
class HeadOutput:
    """What a head returns for a labelled batch.

    loss:   scalar tensor, the total training loss (already weighted and summed).
    logits: [B, C] scores; ``logits.argmax(1)`` is the prediction.
    parts:  the named loss terms that make up ``loss`` (e.g. ``{"ce": ..., "penalty": ...}``), each a
            scalar tensor, reported separately in logs.
    """

    loss: Tensor
    logits: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


# a pytree node, so that torch.export (and anything else that flattens outputs) takes a head's forward as it is
torch.export.register_dataclass(HeadOutput, serialized_type_name="featspace.heads.HeadOutput")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # half-precision embeddings are upcast by the heads (upcast_half) before any squared distance
    return torch.promote_types(dtype, torch.float32)


def max_embedding_magnitude(dtype: torch.dtype, embedding_dim: int) -> float:
    """The largest |x_ij| a head accepts: squared distances of such embeddings (‖x − y‖² ≤ 4·d·max²) times the
    largest loss weight a head accepts (``hparams.MAX_WEIGHT``) stay finite in the dtype the head computes in
    (4·10¹⁵ for float32 at d = 512). Larger finite embeddings would make NaN or Inf losses (issue 17, item 11)."""
    return math.sqrt(torch.finfo(_compute_dtype(dtype)).max / (4.0 * embedding_dim * MAX_WEIGHT))


class Head(nn.Module):
    """Base class of every head. See the module docstring for the contract.

    Attributes set by the base class: ``embedding_dim`` (d) and ``num_classes`` (C).
    ``validate_inputs`` (default True) runs the checks of :meth:`check_inputs` on every eager call; the
    non-finite check costs one device sync per step, which a user who has validated the pipeline can
    switch off. Under ``torch.compile``, ``torch.export``, ONNX export and ``torch.jit.trace`` the checks are
    skipped whatever its value (``functional.capturing_graph``), so a head compiles and exports with default settings.
    """

    #: registry name, filled in by ``register_head``
    name: ClassVar[str] = ""
    #: True when the loss depends on statistics of the whole batch (pairs, class means, covariances):
    #: under DDP such heads gather embeddings across processes (see ``gather_batch``).
    uses_batch_statistics: ClassVar[bool] = False

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedding_dim = integer("embedding_dim", embedding_dim, low=1)
        self.num_classes = integer("num_classes", num_classes, low=2)
        self.validate_inputs = True

    # ----------------------------------------------------------------------------------- contract
    def forward(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:  # noqa: D102
        if self.validate_inputs and not capturing_graph():
            self.check_inputs(embeddings, labels)
        return self.compute(self.as_head_dtype(embeddings), labels)

    def predict(self, embeddings: Tensor) -> Tensor:
        """Scores [B, C] for unlabelled embeddings [B, d]; argmax is the prediction."""
        if self.validate_inputs and not capturing_graph():
            self.check_inputs(embeddings)
        return self.scores(self.as_head_dtype(embeddings))

    def as_head_dtype(self, embeddings: Tensor) -> Tensor:
        """The one dtype rule of every head: outside autocast, floating embeddings of another dtype are cast to
        the head's own (that of its floating parameters and buffers), so a float32 head takes fp16, bf16 or
        float64 embeddings and computes in float32, and a float64 head computes in float64. Under autocast they
        are left as they come (autocast chooses, and heads upcast half precision where they must)."""
        if not embeddings.is_floating_point() or torch.is_autocast_enabled(embeddings.device.type):
            return embeddings
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            if tensor.is_floating_point():
                return embeddings if embeddings.dtype == tensor.dtype else embeddings.to(tensor.dtype)
        return embeddings

    def start_epoch(self, epoch: int) -> None:
        """Called by the training loop before epoch ``epoch`` (1-based). Default: nothing."""

    def compute(self, embeddings: Tensor, labels: Tensor) -> HeadOutput:
        """Loss, logits and parts for validated inputs. Implemented by every head."""
        raise NotImplementedError

    def scores(self, embeddings: Tensor) -> Tensor:
        """Scores [B, C] for validated inputs. Implemented by every head."""
        raise NotImplementedError

    # ------------------------------------------------------------------- optional, for evaluation
    def learned_centroids(self) -> Tensor | None:
        """Class centroids [C, d'] the head learns or fixes (ICV, center loss, PEDCC), in the space
        returned by :meth:`feature_space`; ``None`` for heads without them."""
        return None

    def feature_space(self, embeddings: Tensor) -> Tensor:
        """The embeddings in the space the head compares them in (e.g. LACE's whitened space).
        Identity by default; used by cluster-validity evaluation."""
        return embeddings

    # ----------------------------------------------------------------------------------- helpers
    def check_inputs(self, embeddings: Tensor, labels: Tensor | None = None) -> None:
        """Raise ``ValueError`` saying what is wrong with a batch; return silently when it is fine."""
        if not isinstance(embeddings, Tensor):
            raise ValueError(f"{self.name or type(self).__name__}: embeddings must be a torch.Tensor, "
                             f"got {type(embeddings).__name__}")
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"{self.name}: embeddings must have shape [B, {self.embedding_dim}], "
                f"got {tuple(embeddings.shape)}"
            )
        if embeddings.shape[0] == 0:
            raise ValueError(f"{self.name}: empty batch (B = 0)")
        if not embeddings.is_floating_point():
            raise ValueError(f"{self.name}: embeddings must be floating point, got {embeddings.dtype}")
        # one reduction (one device sync) answers both checks: NaN/Inf propagate into the maximum
        largest = float(embeddings.detach().abs().amax())
        if not math.isfinite(largest):
            bad = int((~torch.isfinite(embeddings)).any(dim=1).sum())
            raise ValueError(f"{self.name}: {bad} embedding row(s) contain NaN or Inf")
        limit = max_embedding_magnitude(embeddings.dtype, self.embedding_dim)
        if largest > limit:
            raise ValueError(f"{self.name}: embeddings reach {largest:.3g}, beyond {limit:.3g}, where squared "
                             f"distances and weighted losses overflow {_compute_dtype(embeddings.dtype)}; "
                             "normalise or rescale them (or train in float64)")
        if labels is None:
            return
        if not isinstance(labels, Tensor):
            raise ValueError(f"{self.name}: labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"{self.name}: labels must have shape [{embeddings.shape[0]}] to match the embeddings, "
                f"got {tuple(labels.shape)}"
            )
        if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise ValueError(f"{self.name}: labels must be an integer tensor (int64), got {labels.dtype}")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f"{self.name}: labels must lie in [0, {self.num_classes - 1}], got values in [{low}, {high}]"
            )

    def gather_batch(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Embeddings and labels of the *global* batch for losses built on batch statistics.

        On one process this returns its inputs. Under ``torch.distributed`` with several processes,
        heads with ``uses_batch_statistics`` get every process's samples concatenated in rank order,
        with gradients flowing back to each process's own samples (see ``featspace.distributed``).
        """
        return distributed.gather_with_grad(embeddings, labels)

    def sample_mean(self, values: Tensor) -> Tensor:
        """Mean of per-sample loss terms [B] that stays exact under DDP with uneven shards.

        On one process this is ``values.mean()``. Under DDP it is ``values.sum() · P / N`` with N the
        global number of samples: DDP averages gradients over the P processes, so the averaged loss
        and gradients equal those of the mean over the whole global batch even when the shards differ
        in size (a last batch). Heads that gather batch statistics use it for their per-sample terms.
        """
        processes = distributed.world_size()
        if processes == 1:
            return values.mean()
        return values.sum() * (processes / distributed.global_count(values.shape[0], values.device))

    def extra_repr(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in hparams_of(self).items())
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}" + (f", {hp}" if hp else "")


def upcast_half(t: Tensor) -> Tensor:
    """float16/bfloat16 -> float32, anything else unchanged.

    Losses (log-sum-exp, acos, norms) are evaluated at least in float32 so that bf16 autocast gives a
    finite loss close to the float32 one, while float64 inputs stay float64 (needed by gradcheck)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


# --------------------------------------------------------------------------------------- registry
#: every head by name; ``embedding_dim`` and ``num_classes`` are the caller's, the rest are hyperparameters
HEADS = Registry("head", fixed=("embedding_dim", "num_classes"), parameter="hyperparameter")
H = TypeVar("H", bound=type[Head])


def register_head(name: str) -> Callable[[H], H]:
    """Class decorator: make a ``Head`` subclass buildable as ``build(name, ...)``."""

    def decorate(cls: H) -> H:
        if not (isinstance(cls, type) and issubclass(cls, Head)):
            raise TypeError(f"@register_head({name!r}) must decorate a Head subclass, got {cls!r}")
        HEADS.register(name)(cls)
        cls.name = name  # after registering: a refused duplicate leaves the class as it was
        return cls

    return decorate


def names() -> list[str]:
    """Sorted names of every registered head."""
    return sorted(HEADS.names())


def get_head_class(name: str) -> type[Head]:
    """The class registered under ``name``; ``ValueError`` listing the valid names otherwise."""
    return HEADS.get(name)


def build(name: str, embedding_dim: int, num_classes: int, **hparams: object) -> Head:
    """Build the head registered as ``name`` with the paper's defaults, overridden by ``hparams``.

    Raises ``ValueError`` for an unknown name or hyperparameter, listing the valid ones.
    """
    return HEADS.build(name, embedding_dim, num_classes, **hparams)


def hparams_of(head: Head) -> dict[str, object]:
    """The hyperparameters a head was built with (its constructor's arguments, read back from
    attributes of the same name where the head keeps them)."""
    out: dict[str, object] = {}
    # from the class's own signature, so unregistered subclasses (and their repr) work too
    for key in parameters_of(type(head), HEADS.fixed):
        if hasattr(head, key):
            value = getattr(head, key)
            if isinstance(value, (int, float, str, bool, type(None))):
                out[key] = value
    return out


def describe(name: str) -> str:
    """One-line description of a head: the first line of its class docstring."""
    return HEADS.describe(name)


def default_hparams(name: str) -> dict[str, object]:
    """The defaults of a head's hyperparameters, as its constructor declares them."""
    return HEADS.defaults(name)
