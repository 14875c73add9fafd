"""The data, from image files to the split a model trains on.

- :mod:`~biaslab.data.sources`: where images come from (digits, a folder tree, a CSV table,
  NIH ChestX-ray14), each as an index table and the files to decode;
- :mod:`~biaslab.data.metadata`: sex, age and patient ids spelled one way;
- :mod:`~biaslab.data.images`: one image cropped, grayscale, resized, as uint8;
- :mod:`~biaslab.data.prepare`: every file of a source decoded so, stored as one uint8 array;
- :mod:`~biaslab.data.bias`: the controlled bias S and how the model is shown it;
- :mod:`~biaslab.data.split` and :mod:`~biaslab.data.split_names`: the patient-grouped split;
- :mod:`~biaslab.data.audit`: who is in the data, with which labels, where;
- :mod:`~biaslab.data.group_keys` and :mod:`~biaslab.data.columns`: how a group is named, and
  the one check for missing columns;
- :mod:`~biaslab.data.finding_names` and :mod:`~biaslab.data.findings`: several findings, one
  label column each.

Kept free of imports, so that importing one module does not import the others (the DVC stages
depend on exactly the modules they import).
"""
