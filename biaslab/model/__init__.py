"""The model: architectures, batches, the training loop, checkpoints, prediction, devices.

- :mod:`~biaslab.model.architectures`: the CNNs, mapping images to one logit (or one per
  finding);
- :mod:`~biaslab.model.batches`: a split's rows as tensors;
- :mod:`~biaslab.model.train`: the resumable training loop (one device, or DDP);
- :mod:`~biaslab.model.multilabel`: several findings: the per-finding loss and figures;
- :mod:`~biaslab.model.checkpoint`: resume states and the final model, byte-stable;
- :mod:`~biaslab.model.predict`: scores, and the counterfactual scores with S forced;
- :mod:`~biaslab.model.devices`: reading the ``device`` param.

Kept free of imports (see :mod:`biaslab.data`).
"""
