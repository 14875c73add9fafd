"""Why a model decides as it does: what it looks at, how it groups the images, how it holds up.

- :mod:`biaslab.explain.select`: the fixed, seeded test images explained per group x outcome;
- :mod:`biaslab.explain.attribution`: occlusion, deconvnet-style and Grad-CAM maps (captum), and
  the share of the attribution that falls on the injected bias;
- :mod:`biaslab.explain.activations`: the hidden layers' activations, read by forward hooks;
- :mod:`biaslab.explain.signatures`: activation signatures (PCA, k-means, flows, anomalies);
- :mod:`biaslab.explain.signature_figures`: their Sankey diagram and the anomalies' thumbnails;
- :mod:`biaslab.explain.robustness`: accuracy and fairness gaps under rotation and noise;
- :mod:`biaslab.explain.pipeline`: all of it for one model, as the explain stage runs it.

Submodules are imported by name (nothing is re-exported here), so that reading one does not
load captum, scikit-learn and matplotlib for the others.
"""
