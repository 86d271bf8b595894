"""What a report shows, independent of the format it is written in (``build`` writes Markdown and CSV,
``html`` a self-contained page), and the environment it records."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featspace.report.tables import Run, Table
from featspace.rundir import code_version

__all__ = ["Figure", "FigureSection", "Report", "ReportPaths", "environment"]


@dataclass
class Figure:
    path: Path          # inside the report's folder
    caption: str


@dataclass
class FigureSection:
    title: str
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Report:
    """Everything a report shows, independent of the format it is written in."""

    title: str
    description: str = ""
    source: str = ""
    notes: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    sections: list[FigureSection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    axes: list[str] = field(default_factory=list)


@dataclass
class ReportPaths:
    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    runs_csv: Path
    figures: list[Path]


# ------------------------------------------------------------------------------------------ environment
def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    except Exception:  # a report must not fail for want of a GPU query
        pass
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} logical cores"


def environment(runs: Sequence[Any] = ()) -> dict[str, str]:
    """Code version, torch version, device and date of the report's making, and the runs' code versions."""
    import torch

    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "featspace": code_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device (report)": _device(),
    }
    versions = sorted({str(v) for v in (getattr(r, "code_version", None) for r in runs) if v})
    if versions:
        info["featspace (runs)"] = ", ".join(versions)
    accelerators = sorted({str(r.config.get("accelerator")) for r in runs if r.config.get("accelerator")})
    if accelerators:
        info["accelerator (runs' config)"] = ", ".join(accelerators)
    return info
