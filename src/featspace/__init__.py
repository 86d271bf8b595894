"""featspace: discriminative feature learning for image classifiers.

Heads (``featspace.heads``) turn embeddings into a loss and class scores; ``featspace.functional`` holds
their pure math; ``featspace.pedcc`` generates predefined evenly-distributed class centroids.
"""

__version__ = "0.1.0"
