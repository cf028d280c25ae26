"""``python -m lai``: the same as the ``lai`` console script."""

import sys

from lai.cli import main

sys.exit(main())
