"""Sweeps: the headline figures against a param, one DVC experiment per value x seed.

- :mod:`~biaslab.sweep.table`: what needs no DVC: the plan, the outcomes, the table;
- :mod:`~biaslab.sweep.figure`: the table's figure (``reports/sweep.png``);
- :mod:`~biaslab.sweep.results`: an experiment's results, read once from its Git commit (both
  drivers);
- :mod:`~biaslab.sweep.local_queue`: what DVC's local queue's state files say of a sweep (the
  local driver waits on them, never on ``dvc exp show``);
- :mod:`~biaslab.sweep.ray_cluster`: the experiments as Ray tasks on a cluster (``--ray``),
  the driver's side: submitting the tasks, collecting their results;
- :mod:`~biaslab.sweep.ray_task`: the task that runs one experiment on a worker of the cluster
  (it reads the worker's environment).

The command that drives a sweep, ``biaslab sweep`` (DVC's queue on one machine, or Ray), is
:mod:`biaslab.cli.sweep`; its local driver :mod:`biaslab.cli.sweep_queue`.

Kept free of imports (see :mod:`biaslab.data`).
"""
