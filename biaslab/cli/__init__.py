"""The command-line edge: the ``biaslab`` command (:mod:`biaslab.cli.main`, one module per
subcommand: train, predict, sweep, recover) and the runtime shared with the training stage
(:mod:`biaslab.cli.runtime`). The rest of ``biaslab`` is pure: it neither prints nor reads the
environment. Kept empty so that importing the runtime does not import the commands.
"""
