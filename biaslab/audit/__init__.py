"""Auditing a model biaslab did not train, from a table of its predictions.

A user brings one row per (model, image): a 0/1 label, the model's score (or only its hard
decision), the image's groups and, optionally, its split (val/test), patient and id. The audit
then does what the pipeline does after ``predict``: it fits the threshold methods on the
validation rows (:mod:`biaslab.fairness.thresholds`), evaluates the test decisions with the
same bootstrap intervals, permutation tests and seed variance
(:func:`biaslab.fairness.evaluate.evaluate_seeds`), judges ``report.criteria``
(:mod:`biaslab.fairness.verdict`) and renders the same report (:mod:`biaslab.report`).

Modules: ``table`` (the checks of the table, each bad input one clear error before any work,
and its split into the attribute table and one prediction table per model), ``run`` (the
audit itself: postprocess, evaluate, verdict, report), ``compare`` (two models on the same
test images, paired: ``--compare A B``; ``compare_words`` says it in sentences), ``model_file``
(a TorchScript, ONNX or torchvision state-dict model loaded so that it takes biaslab's inputs,
and scored: the table it makes) and ``looks`` (what such a model looks at, for the report).
The grid's ``scheme`` column holds the model's name: a model plays the part of a pipeline
scheme, its seeds those of the training seeds.
"""
