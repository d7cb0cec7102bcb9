"""``python -m mambavision benchmark ...``: see mambavision/cli.py."""

import sys

from .cli import main

sys.exit(main())
