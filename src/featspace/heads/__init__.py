"""Every head of featspace, registered by name.

>>> from featspace import heads
>>> head = heads.build("arcface", embedding_dim=64, num_classes=10)
>>> out = head(embeddings, labels)      # HeadOutput(loss, logits, parts)
>>> heads.names()                       # every registered name

Importing this package imports every head module, which fills the registry.
"""

from featspace.heads import (  # noqa: F401  (imported for their @register_head side effect)
    amc,
    centroid,
    complement,
    directsum,
    hasep,
    lace,
    margin,
    pod,
    softmax,
)
from featspace.heads.base import (
    Head,
    HeadOutput,
    build,
    default_hparams,
    describe,
    get_head_class,
    hparams_of,
    names,
    register_head,
)

__all__ = [
    "Head",
    "HeadOutput",
    "build",
    "default_hparams",
    "describe",
    "get_head_class",
    "hparams_of",
    "names",
    "register_head",
]
