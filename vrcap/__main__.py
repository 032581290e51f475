"""`python -m vrcap` is the `vrcap` command (the server starts jobs this way, with the same interpreter)."""

import sys

from vrcap.cli import main

sys.exit(main())
