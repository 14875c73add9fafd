"""The names of the three parts of a split, and the names sources ship for them.

Its own module, imported by the split, the folder source and config alike, so that neither
the prepare stage nor config depends on the split's code.
"""

SPLITS = ("train", "val", "test")
# split names a source may ship (folder names of the folder source, values of source_split),
# mapped to ours
SOURCE_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}
