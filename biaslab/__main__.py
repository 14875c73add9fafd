"""``python -m biaslab``: see biaslab.cli."""

import sys

from biaslab.cli.commands import main

sys.exit(main())
