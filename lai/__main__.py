"""``python -m lai``: the same as the ``lai`` console script."""

import sys

from lai.cli import main

if __name__ == "__main__":  # importing this module (as tests walking the package do) runs nothing
    sys.exit(main())
