"""split: stratified train/val/test assignment, the images of a patient kept in one part (each
image its own unit without patient ids), or the source's own split.

It runs first after the index and S exist, before any training: it also checks every column
that a param names (biaslab.config.columns), so dvc.yaml gives it those keys as params.
"""

import argparse

from biaslab import artifacts
from biaslab.config import check_columns, load_config
from biaslab.data.group_keys import IMAGES, images_text, unit_word
from biaslab.data.split import (
    missing_in_parts,
    parts_error,
    source_split,
    stratified_split,
    subsample_train,
    train_rows,
)
from stages import present_columns, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", required=True)
    parser.add_argument("--bias", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    params = load_config()
    cfg = params.split

    table = artifacts.read_rows(args.index, args.bias)
    # every column a param names (evaluate.groups, ...), checked before any model is trained:
    # evaluate would find a misspelt group only after every training
    check_columns(params, table.columns, where="the index (after bias)")
    stratify = present_columns(cfg.stratify, table, "split", "not stratified on it")
    # strata too small to keep apart are merged, with a warning (stages.run prints it)
    split = source_split(table) if cfg.use_source else stratified_split(
        table, cfg.fractions, stratify, cfg.seed, min_stratum=cfg.min_stratum)
    # auto: the digits task's subsample on the digits, every training row on other sources
    size = train_rows(cfg.train_size, params.data.source, composition=cfg.train_composition)
    if size:
        split["split"] = subsample_train(table, split["split"], size=size,
                                         composition=cfg.train_composition, seed=cfg.seed)
    # a part without a class or a group would fail postprocess or evaluate only after every
    # model is trained; s, the injected bias, is what they compare by default
    groups = [*stratify, *(["s"] if "s" in table and "s" not in stratify else [])]
    lacking = missing_in_parts(table, split["split"], groups)
    if lacking:
        raise ValueError(parts_error(lacking, use_source=cfg.use_source, stratify=stratify))
    artifacts.write_parquet(split, args.out)
    counts = split["split"].value_counts().to_dict()
    how = "the source's split" if cfg.use_source else f"stratified on {stratify}"
    together = "" if unit_word(table) == IMAGES else ", each patient's images in one part"
    print(f"split: {images_text(table)}{together}: {counts} ({how}) -> {args.out}")


if __name__ == "__main__":
    run(main, "split")
