"""``python -m durapod``: the same as the ``durapod`` command."""

import sys

from durapod.cli import main

if __name__ == "__main__":
    sys.exit(main())
