"""``python -m hydration``: the command line (see ``hydration.cli``)."""

import sys

from hydration.cli import main

sys.exit(main())
