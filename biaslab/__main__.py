"""``python -m biaslab COMMAND``: the ``biaslab`` command (:mod:`biaslab.cli.main`)."""

import sys

from biaslab.cli.main import main

sys.exit(main())
