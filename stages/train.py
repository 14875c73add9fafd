"""train@SCHEME-SEED: train the model on the training split with the scheme's sample weights, or
under its in-training method (groupdro, jtt, adversarial, domain_independent: mitigation), from
one of the training seeds (train.seeds)."""

import argparse
import sys
from pathlib import Path

from biaslab import artifacts
from biaslab.cli.runtime import Progress, distributed
from biaslab.cli.warning_lines import warning_lines
from biaslab.config import IN_TRAINING, as_dict, load_section
from biaslab.data.bias import BiasSpec
from biaslab.data.findings import findings_of
from biaslab.fairness.weights import group_codes
from biaslab.model.batches import TrainData
from biaslab.model.checkpoint import digest, save_checkpoint
from biaslab.model.mitigation.methods import GROUPED, fit_scheme
from biaslab.model.recipe import swing, unstable
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scheme", required=True)
    parser.add_argument("--seed", type=int, required=True, help="the training seed")
    for arg in ("pixels", "index", "bias", "split", "weights", "model", "curves"):
        parser.add_argument(f"--{arg}", required=True)
    parser.add_argument("--health", help="JSON of the degenerate-model check (default: "
                        "health.json beside --model)")
    args = parser.parse_args()
    cfg, bias = load_section("train"), BiasSpec.from_config(load_section("bias"))
    mitigation = load_section("mitigation")
    # this run's own seed: the checkpoint records it, and not the other seeds of the list
    cfg = cfg.model_copy(update={"seeds": [args.seed]})
    name = f"train@{args.scheme}-{args.seed}"
    device, ddp = distributed(cfg.device)

    table = artifacts.read_rows(args.index, args.bias, args.split, args.weights)
    pixels = artifacts.read_pixels(args.pixels, n_rows=len(table))
    # weights.mode travels in the weights file (a dep of this stage), so changing it retrains;
    # a weighted sampler redraws the training rows in proportion to weight at every epoch
    sampler = "mode" in table and bool((table["mode"] == "sampler").any())
    # several findings (data.findings): the index's label_F columns, one output each
    findings = tuple(findings_of(table))
    if findings and args.scheme in IN_TRAINING:
        raise ValueError(f"weights.schemes: {args.scheme} trains one output; a run with "
                         f"data.findings ({len(findings)} findings) takes the weighting "
                         "schemes only (none, reweighing, ...)")
    train = TrainData.from_table(table, "train", weights="weight", sampler=sampler,
                                 findings=findings)
    val = TrainData.from_table(table, "val", weights="weight", findings=findings)
    if args.scheme in GROUPED:  # the method's group of each row: weights.groups' joint value
        train.groups = group_codes(table[table["split"] == "train"],
                                   load_section("weights").groups)
    progress = Progress(cfg.epochs, -(-len(train.rows) // ddp.world_size), quiet=ddp.rank != 0)
    progress.log(f"{name}: {len(train.rows)} train / {len(val.rows)} val images")
    # a per-epoch checkpoint beside the model (not a DVC output, so DVC keeps it when a killed
    # run is started again): resumed only by a run of the same inputs, params and code (this
    # stage and the biaslab modules it loaded), removed once the model is saved
    resume = Path(args.model).with_name("resume.pt")
    code = sorted(m.__file__ for n, m in sys.modules.items()
                  if n.split(".")[0] == "biaslab" and getattr(m, "__file__", None))
    inputs = [args.pixels, args.index, args.bias, args.split, args.weights, __file__, *code]
    key = digest(inputs, {"train": as_dict(cfg), "bias": bias.as_dict(),
                          "mitigation": as_dict(mitigation), "scheme": args.scheme})
    with warning_lines(name):  # e.g. torch's, of a nondeterministic op
        fitted = fit_scheme(args.scheme, pixels, train, val, cfg, bias, mitigation=mitigation,
                            seed=args.seed, device=device, ddp=ddp,
                            checkpoint=resume, fingerprint=key, log=progress.log,
                            on_epoch=progress.epoch, on_batch=progress.batch)
    if ddp.rank != 0:  # under torchrun only the first process writes
        return
    save_checkpoint(fitted.model, cfg, train.in_channels(bias), args.model, bias=bias,
                    findings=findings)  # atomic
    # speed goes to the summary line, not the artifact: same params and seed, same file
    curves = fitted.curves
    artifacts.write_csv(curves.drop(columns="img_per_s"), args.curves)
    # the degenerate-model flag, for evaluate: null when the model learnt something; the
    # stability figure (std of val_bacc over the second half of the epochs) and its warning
    health = args.health or Path(args.model).with_name("health.json")
    figure = swing(curves)
    warning = unstable(figure)
    artifacts.write_json(
        {"scheme": args.scheme, "seed": args.seed, "degenerate": fitted.degenerate,
         "val_bacc_swing": None if figure is None else round(figure, 6), "unstable": warning},
        health)
    resume.unlink(missing_ok=True)
    for flag in (fitted.degenerate, warning):
        if flag:
            print(f"{name}: warning: {flag}", file=sys.stderr)
    best = curves.loc[curves["val_loss"].idxmin()]
    print(f"{name}: best epoch {int(best['epoch'])}/{cfg.epochs}, val_loss "
          f"{best['val_loss']:.4f}, val_acc {best['val_acc']:.3f}, "
          f"{curves['img_per_s'].mean():.0f} img/s -> {args.model}")


if __name__ == "__main__":
    run(main, "train")
