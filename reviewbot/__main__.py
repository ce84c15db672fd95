"""``python -m reviewbot``: the same as the ``reviewbot`` command."""

import sys

from reviewbot.cli import main

sys.exit(main())
