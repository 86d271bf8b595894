"""Forward+backward time and memory of every head, as ratios to ``softmax`` measured in the same run.

    .venv/bin/python benchmarks/heads.py                   # CPU (and CUDA when present), default shapes
    .venv/bin/python benchmarks/heads.py --shapes 256,512,100 --heads softmax hasep --repeats 20

For each (B, d, C) it times ``loss.backward()`` after ``head(x, y)`` (median of ``--repeats`` after
warm-up) and measures memory: on CUDA the peak allocated bytes; on the CPU, where PyTorch keeps no
allocator statistics, the bytes of the tensors autograd saves for backward plus the outputs (the part
of memory a head's formulation decides — a B×d×C intermediate shows up here). Besides the registered
heads it measures two literal formulations the heads avoid, so the README can quote the gain:

- ``hasep_literal``: HASeparator with the B×d×C tensor of normals (004 eq. 5-7 as written);
- ``nca_loss``, ``proto_loss``: the losses of the ``nca`` and ``proto`` heads alone (``featspace.functional``),
  without the running class means and the nearest-mean logits [B, C] the heads also return: the part that
  does what pytorch-metric-learning's ``NCALoss`` does;
- ``lace_svd``: LACE as the authors' code parameterises it (learned covariance factor, an SVD per step),
  from ``benchmarks/lace_svd_reference.py``.

Where pytorch-metric-learning is installed it also times that library's loss for every head it has a true
equivalent of (the same function at featspace's default setting, :data:`PML_PEERS`), as ``pml_<head>``
rows printed under the head, so a head's cost can be read beside its peer's in one run.

Prints a table and writes JSON (``--out``, default ``benchmarks/results/heads.json``).
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from featspace import __version__, functional, heads  # noqa: E402
from featspace.heads.base import Head  # noqa: E402
from featspace.io import write_json  # noqa: E402

DEFAULT_SHAPES = [(256, 512, 10), (256, 512, 100), (256, 512, 1000)]


class LossOnly(nn.Module):
    """A metric loss of ``featspace.functional`` as a module: ``loss(x, y)``, nothing else."""

    def __init__(self, loss) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(x, y)


class LiteralHASeparator(nn.Module):
    """HASeparator exactly as eq. 5-7 read: unit normals ĥ_j = (ŵ_y − ŵ_j)/‖ŵ_y − ŵ_j‖ built per sample,
    a [B, C, d] tensor, then x̂·ĥ_j. Same loss as the ``hasep`` head; here only to be timed against it."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w_hat = F.normalize(self.head.weight, dim=1)
        x_hat = F.normalize(x, dim=1)
        logits = self.head.scale * x_hat @ w_hat.t()
        normals = w_hat[y][:, None, :] - w_hat[None, :, :]                      # [B, C, d]
        normals = normals / normals.norm(dim=2, keepdim=True).clamp_min(1e-12)
        projections = torch.einsum("bd,bcd->bc", x_hat, normals)               # [B, C]
        hinge = (self.head.margin - projections).clamp_min(0)
        hinge = hinge.masked_fill(F.one_hot(y, w_hat.shape[0]).bool(), 0.0)
        return F.cross_entropy(logits, y) + hinge.sum(1).mean()


def _pml_nca_kwargs(head: Head) -> dict[str, object]:
    from pytorch_metric_learning.distances import LpDistance

    # squared Euclidean distances of the raw embeddings, as 003 eq. 4 (PML's default normalises them first)
    return {"distance": LpDistance(normalize_embeddings=False, p=2, power=2), "softmax_scale": 1.0}


#: featspace head -> (pytorch-metric-learning loss, its arguments for the head's default setting). Only true
#: equivalents: PML has no center, prototypical, combined-margin, HASeparator, LACE, POD or direct-sum loss.
#: Its ArcFace margin is in degrees; its NormalizedSoftmaxLoss takes the temperature 1/s; its SphereFaceLoss
#: casts the margin to an int and multiplies by ‖x‖ (featspace's ``scale=None``), so it runs m = 4 against
#: featspace's default real m = 1.35 at s = 64 (the cost of ψ is the same); NCALoss runs on raw embeddings.
PML_PEERS = {
    "arcface": ("ArcFaceLoss", lambda h: {"margin": math.degrees(h.margin), "scale": h.scale}),
    "cosface": ("CosFaceLoss", lambda h: {"margin": h.margin, "scale": h.scale}),
    "normface": ("NormalizedSoftmaxLoss", lambda h: {"temperature": 1.0 / h.scale}),
    "sphereface": ("SphereFaceLoss", lambda h: {"margin": 4, "scale": 1}),
    "lsoftmax": ("LargeMarginSoftmaxLoss", lambda h: {"margin": h.margin, "scale": 1}),
    "nca": ("NCALoss", _pml_nca_kwargs),
}
_CLASSIFIER_LOSSES = {"ArcFaceLoss", "CosFaceLoss", "NormalizedSoftmaxLoss", "SphereFaceLoss", "LargeMarginSoftmaxLoss"}


def _pml_available() -> bool:
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        return False
    return True


def _build_pml(head_name: str, d: int, c: int) -> nn.Module:
    from pytorch_metric_learning import losses

    loss_name, kwargs = PML_PEERS[head_name]
    kwargs = kwargs(heads.build(head_name, d, c))
    if loss_name in _CLASSIFIER_LOSSES:
        kwargs = {"num_classes": c, "embedding_size": d, **kwargs}
    return getattr(losses, loss_name)(**kwargs)


def _saved_bytes(fn) -> int:
    """Bytes of tensors autograd saves during ``fn()`` plus those of its output."""
    total = 0
    seen: set[int] = set()

    def pack(t: torch.Tensor):
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total + out.numel() * out.element_size()


def _inputs(b: int, d: int, c: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(b, d, generator=g).to(device).requires_grad_()
    y = torch.randint(0, c, (b,), generator=g).to(device)
    return x, y


#: ``--clock``: wall time, or the CPU time of this process (``time.process_time``, all its threads): with
#: ``--threads 1`` on a CPU shared with other jobs it leaves out the time the process waits for a core
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def _time_once(module: nn.Module, call, x: torch.Tensor, y: torch.Tensor, device: str) -> float:
    # as after optimizer.zero_grad() (set_to_none, its default) in a training loop: backward writes fresh
    # gradients instead of adding to old ones
    for tensor in (x, *module.parameters()):
        tensor.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
    start = _clock()
    call(module, x, y).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return _clock() - start


def _memory(module: nn.Module, call, x: torch.Tensor, y: torch.Tensor, device: str) -> float:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        call(module, x, y).backward()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated())
    return float(_saved_bytes(lambda: call(module, x, y)))


def _bench_hparams(name: str, d: int, c: int) -> dict[str, object]:
    """Head options needed at a shape: exact PEDCC needs C ≤ d + 1, so larger C takes the repulsion layout;
    the direct-sum complement needs d > C, so larger C takes the spectral mode (eq. 11), as the paper does."""
    defaults = heads.default_hparams(name)
    if c > d + 1 and "pedcc_method" in defaults:
        return {"pedcc_method": "repulsion"}
    if c >= d and name == "directsum":
        return {"mode": "spectral"}
    return {}


def run(shapes, names, device: str, repeats: int) -> list[dict[str, object]]:
    """Time every head at every shape. Heads are timed round-robin (one step of each head, ``repeats``
    times), so a change in machine load during the run affects every head alike and the ratios to
    ``softmax`` stay fair on a shared machine; the median of each head's steps is reported."""
    rows = []
    for b, d, c in shapes:
        x, y = _inputs(b, d, c, device)
        built: dict[str, tuple[nn.Module, object]] = {}
        errors: dict[str, str] = {}
        for name in names:
            torch.manual_seed(0)
            try:
                if name == "hasep_literal":
                    module, call = LiteralHASeparator(heads.build("hasep", d, c)), lambda m, x, y: m(x, y)
                elif name in ("nca_loss", "proto_loss"):
                    loss = functional.nca_loss if name == "nca_loss" else functools.partial(functional.proto_loss,
                                                                                              num_classes=c)
                    module, call = LossOnly(loss), lambda m, x, y: m(x, y)
                elif name.startswith("pml_"):
                    module, call = _build_pml(name[len("pml_"):], d, c), lambda m, x, y: m(x, y)
                elif name == "lace_svd":
                    from lace_svd_reference import LaceSVDReference

                    module, call = LaceSVDReference(d, c), lambda m, x, y: m(x, y)
                else:
                    module = heads.build(name, d, c, **_bench_hparams(name, d, c))
                    module.validate_inputs = False  # time the formula, not the input checks
                    call = lambda m, x, y: m(x, y).loss  # noqa: E731
                module = module.to(device)
                for _ in range(3):  # warm-up
                    call(module, x, y).backward()
                built[name] = (module, call)
            except (ValueError, RuntimeError, ImportError) as err:
                errors[name] = str(err).splitlines()[0]
        times: dict[str, list[float]] = {name: [] for name in built}
        for _ in range(repeats):
            for name, (module, call) in built.items():
                times[name].append(_time_once(module, call, x, y, device))
        results = {name: {"ms": statistics.median(times[name]) * 1e3, "bytes": _memory(module, call, x, y, device)}
                   for name, (module, call) in built.items()}
        for name, err in errors.items():
            results[name] = {"ms": float("nan"), "bytes": float("nan"), "error": err}
        base = results["softmax"]
        for name in names:
            r = results[name]
            rows.append({"device": device, "B": b, "d": d, "C": c, "head": name, **r,
                         "time_ratio": r["ms"] / base["ms"], "memory_ratio": r["bytes"] / base["bytes"]})
    return rows


def print_table(rows) -> None:
    shapes = sorted({(r["device"], r["B"], r["d"], r["C"]) for r in rows}, key=lambda s: (s[0], s[3]))
    names = list(dict.fromkeys(r["head"] for r in rows))
    header = "head".ljust(16) + "".join(f"{dev} C={c}".rjust(24) for dev, _, _, c in shapes)
    print(header)
    print(" " * 16 + "".join("ms   ×softmax  mem×".rjust(24) for _ in shapes))
    for name in names:
        line = name.ljust(16)
        for shape in shapes:
            r = next((r for r in rows if (r["device"], r["B"], r["d"], r["C"]) == shape and r["head"] == name), None)
            if r is None or r["ms"] != r["ms"]:
                line += "n/a".rjust(24)
            else:
                line += f"{r['ms']:8.2f} {r['time_ratio']:6.2f}× {r['memory_ratio']:6.1f}×".rjust(24)
        print(line)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=None, help="B,d,C triples")
    parser.add_argument("--heads", nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or process CPU time (for a shared CPU, with --threads 1)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="where to measure (default: the CPU, and CUDA when present)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "heads.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    global _clock
    _clock = CLOCKS[args.clock]
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes] if args.shapes else DEFAULT_SHAPES
    if args.heads:
        names = args.heads
    else:
        pml = _pml_available()
        names = ["softmax"]
        for name in heads.names():
            if name != "softmax":
                names += [name, *([f"{name}_loss"] if name in ("nca", "proto") else []),
                          *([f"pml_{name}"] if pml and name in PML_PEERS else [])]
        names += ["hasep_literal", "lace_svd"]
    if "softmax" not in names:
        names = ["softmax", *names]
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    rows = []
    for device in devices:
        rows += run(shapes, names, device, args.repeats)
    print_table(rows)
    meta = {"torch": torch.__version__, "featspace": __version__, "machine": platform.machine(),
            "processor": platform.processor(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "clock": args.clock, "date": time.strftime("%Y-%m-%d")}
    write_json(args.out, {"meta": meta, "rows": rows})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
