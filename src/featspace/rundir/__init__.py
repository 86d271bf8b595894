"""The one owner of the run directory: its files (``layout``) and the SQLite index of runs (``index``).

Training writes runs through it; benches, reports and the commands read them through it. Nothing else names a
run directory's files.
"""

from featspace.rundir.index import (
    DEFAULT_ROOT,
    INDEX_FILE,
    STATUSES,
    RunIndex,
    RunIndexError,
    RunRecord,
    code_version,
    new_run_dir,
)
from featspace.rundir.layout import (
    BEST_CHECKPOINT,
    CENTROID_HISTORY,
    CHECKPOINTS,
    CONFIG,
    EMBEDDINGS,
    FEWSHOT,
    HISTORY,
    LAST_CHECKPOINT,
    METRICS,
    MODEL,
    PAIR_ANGLES,
    PLOTS,
    SKIPPED_FILES,
    RunDir,
    RunDirTaken,
)

__all__ = [
    "BEST_CHECKPOINT",
    "CENTROID_HISTORY",
    "CHECKPOINTS",
    "CONFIG",
    "DEFAULT_ROOT",
    "EMBEDDINGS",
    "FEWSHOT",
    "HISTORY",
    "INDEX_FILE",
    "LAST_CHECKPOINT",
    "METRICS",
    "MODEL",
    "PAIR_ANGLES",
    "PLOTS",
    "STATUSES",
    "RunDir",
    "RunDirTaken",
    "SKIPPED_FILES",
    "RunIndex",
    "RunIndexError",
    "RunRecord",
    "code_version",
    "new_run_dir",
]
