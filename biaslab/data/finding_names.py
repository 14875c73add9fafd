"""The names of several findings (``data.findings``): NIH's 14 and the index's label columns.

Its own module, free of imports, so that config (which checks ``data.findings``) needs neither
numpy nor pandas, and the stages that only name findings depend on no code that reads them.
"""

# the 14 findings of NIH ChestX-ray14 in the NIH order (Wang et al., CVPR 2017): data.findings: all
NIH_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                "Pleural_Thickening", "Hernia")
LABEL_PREFIX = "label_"  # the index's column of finding F is label_F
