"""``python -m mango.cli``: the ``mango`` command."""

import sys

from .main import main

sys.exit(main())
