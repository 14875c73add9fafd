"""Fairness: weights before training, thresholds after it, and the evidence on the test set.

- :mod:`~biaslab.fairness.weights`: per-row sample weights, one scheme at a time;
- :mod:`~biaslab.fairness.thresholds`: decision thresholds fit on validation (scikit-learn
  shaped post-processors);
- :mod:`~biaslab.fairness.metrics`: performance and fairness metrics per group, and the gaps;
- :mod:`~biaslab.fairness.bootstrap`: patient-level bootstrap intervals from cell counts;
- :mod:`~biaslab.fairness.significance`: permutation tests of the gaps, drawing their
  relabellings with :mod:`~biaslab.fairness.relabellings`;
- :mod:`~biaslab.fairness.corrections`: multiple-test corrections of the p-values;
- :mod:`~biaslab.fairness.across_seeds`: one row of figures from several training seeds;
- :mod:`~biaslab.fairness.evaluate`: all of it for every (scheme, method): the grid;
- :mod:`~biaslab.fairness.flags`: the grid's rows that tell nothing (degenerate models, methods
  not applicable), and why;
- :mod:`~biaslab.fairness.costs`: how far each gap is from what a perfect classifier scores
  (the fairness cost);
- :mod:`~biaslab.fairness.recommend`: the Pareto front and the pair recommended, chosen on
  validation, never a dominated one;
- :mod:`~biaslab.fairness.headline`: the grid in brief (metrics/fairness.json, a summary line);
- :mod:`~biaslab.fairness.verdict`: the criteria judged on those figures.

Kept free of imports (see :mod:`biaslab.data`).
"""
