"""In-training mitigation: methods that change the training objective, one per scheme of
``weights.schemes`` (one model per method x seed, beside the weighting schemes).

- :mod:`~biaslab.model.mitigation.groupdro`: GroupDRO (Sagawa et al., ICLR 2020), online weights
  on the groups' losses;
- :mod:`~biaslab.model.mitigation.jtt`: Just Train Twice (Liu et al., ICML 2021), an
  identification run, then its errors upweighted;
- :mod:`~biaslab.model.mitigation.adversarial`: the group removed from the representation by
  gradient reversal (Ganin & Lempitsky 2015; Kim et al. 2019);
- :mod:`~biaslab.model.mitigation.domain_independent`: one head per group, inference by the sum
  of their logits (Wang et al., CVPR 2020);
- :mod:`~biaslab.model.mitigation.heads`: the model cut before its final linear layer, and the
  gradient reversal layer;
- :mod:`~biaslab.model.mitigation.methods`: the method of a scheme, and :func:`fit_scheme`.

A method is an object with three hooks that :func:`biaslab.model.train.fit` calls (the loop
does not import this package): ``wrap(model)``, the module trained (extra heads, state such as
GroupDRO's weights, all saved in the resume checkpoint); ``loss(net, x, y, w, g, loss_fn)``, a
batch's objective given each row's group code ``g``; ``export(module)``, the plain one-logit
model saved for predict, of the architecture's own layout.
"""
