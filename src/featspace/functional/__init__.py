"""Pure tensor math shared by heads and metrics: no parameters, no state.

Each submodule holds one family (see its docstring); everything public is re-exported here, so
``featspace.functional.ace_scores`` and friends are the names to use.
"""

from featspace.functional import ace, angular, metric, rows, subspace
from featspace.functional.ace import *  # noqa: F403
from featspace.functional.angular import *  # noqa: F403
from featspace.functional.capture import *  # noqa: F403
from featspace.functional.metric import *  # noqa: F403
from featspace.functional.rows import *  # noqa: F403
from featspace.functional.subspace import *  # noqa: F403

__all__ = sorted({*ace.__all__, *angular.__all__, *metric.__all__, *rows.__all__, *subspace.__all__})
