"""``python -m smdrd``: the same as the ``smdrd`` command."""

import sys

from smdrd.cli import main

sys.exit(main())
