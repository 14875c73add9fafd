"""Sweeps: the headline figures against a param, one DVC experiment per value x seed.

- :mod:`~biaslab.sweep.table`: what needs no DVC: the experiments' names, the table, the figure;
- :mod:`~biaslab.sweep.ray_cluster`: the experiments as Ray tasks on a cluster (``--ray``):
  the tasks run on the cluster's workers, so this module reads their environment.

The command that drives a sweep, ``biaslab sweep`` (DVC's queue on one machine, or Ray), is
:mod:`biaslab.cli.sweep`.

Kept free of imports (see :mod:`biaslab.data`).
"""
