"""``python -m mango.cli``: the ``mango`` command."""

import sys

from .maximize import main

sys.exit(main())
