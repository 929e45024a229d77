"""``python -m ragkit.cli``: the ragkit command."""

import sys

from ragkit.cli.main import main

sys.exit(main())
