"""``python -m featspace``: the ``featspace`` command."""

import sys

from featspace.cli import main

sys.exit(main())
