"""``python -m biaslab``: see biaslab.cli."""

import sys

from biaslab.cli import main

sys.exit(main())
