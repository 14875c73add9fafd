"""``biaslab audit --model-file``: a model file scored on a table of images, then audited.

The images table has the csv source's columns (docs/data-sources.md): a path column (relative
to --root), a 0/1 label column (--label) and the attribute columns (--groups; ``sex`` and
``age`` are normalised and ``age_group`` derived as the pipeline does), optionally a patient
column (--patient) and a val/test column (--split). The images are prepared as the pipeline's
prepare stage prepares them (:func:`biaslab.data.prepare.decode_source`: grayscale, square,
at --input-size; unusable and duplicate images rejected and said), scored in batches
(:mod:`biaslab.audit.model_file`), and the predictions table they make is checked and audited
by the same code as a user's (:func:`biaslab.audit.table.check_predictions`). What the model
looks at (:mod:`biaslab.audit.looks`) is added to the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# the options of a predictions table that a model file makes for itself
NOT_WITH_A_MODEL_FILE = ("score", "decision", "logits", "id", "model", "seeds_of", "compare")
ABSENT = {
    "flip": "No flip test: it forces an injected bias S on the images, and a model trained "
            "elsewhere was shown no S.",
    "examples": "No examples: the maps of what the model looks at show test images as it "
                "sees them.",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group(
        "a model file (instead of --predictions): scored on a table of images")
    model.add_argument("--model-file", metavar="FILE",
                       help="a TorchScript file, an ONNX file (*.onnx), or a state dict with "
                            "--arch")
    model.add_argument("--arch", metavar="NAME",
                       help="the torchvision architecture of --model-file's state dict "
                            "(resnet18, densenet121, ...)")
    model.add_argument("--images", metavar="TABLE",
                       help="CSV of the images: path, label (--label), the --groups columns, "
                            "optionally --patient and --split (val/test) columns")
    model.add_argument("--root", metavar="DIR", help="folder the table's paths are relative to")
    model.add_argument("--path-column", default="path", metavar="NAME",
                       help="column of image paths (default: path)")
    model.add_argument("--input-size", type=int, metavar="N",
                       help="side of the square images the model takes (default: --params' "
                            "prepare.size)")
    model.add_argument("--channels", type=int, choices=(1, 3), default=1,
                       help="1, or 3: the grayscale image repeated (default: 1)")
    model.add_argument("--mean", default="0", metavar="M[,M,M]",
                       help="normalisation mean, pixels in [0, 1] (default: 0)")
    model.add_argument("--std", default="1", metavar="S[,S,S]",
                       help="normalisation standard deviation (default: 1)")
    model.add_argument("--output", default="logit", metavar="logit|index:K",
                       help="one logit per image, or the positive class's index K among "
                            "several outputs (softmax) (default: logit)")
    model.add_argument("--gradcam-layer", metavar="NAME",
                       help="the module Grad-CAM reads (default: the last one with an "
                            "image-shaped output)")
    model.add_argument("--batch-size", type=int, default=64, metavar="N",
                       help="images per forward pass (default: 64)")


def predictions(args, params, groups: list[str], seeds: dict):
    """The checked predictions of ``args.model_file`` on ``args.images``, and the audit's extra
    keywords (``explain``, ``absent``)."""
    from scipy.special import expit
    from tqdm import tqdm

    from biaslab.audit import model_file as mf
    from biaslab.audit.looks import NO_BIAS, look
    from biaslab.audit.table import Columns, check_predictions
    from biaslab.data.bias import model_inputs
    from biaslab.model.devices import pick_device

    _check_options(args)
    spec = mf.InputSpec(size=args.input_size or params.prepare.size, channels=args.channels,
                        mean=mf.parse_numbers(args.mean, "--mean"),
                        std=mf.parse_numbers(args.std, "--std"), output=args.output)
    model = mf.load_model(args.model_file, spec, arch=args.arch)
    device = "cpu" if model.kind == "onnx" else pick_device(params.explain.device,
                                                            key="explain.device")
    index, pixels = _images(args, params, groups, spec.size)
    with tqdm(total=len(index), unit="img", file=sys.stderr, desc="audit: scoring",
              disable=None) as bar:
        logits = mf.score(model, lambda a, b: model_inputs(pixels, np.arange(a, b), None, NO_BIAS),
                          len(index), batch_size=args.batch_size, device=device,
                          progress=bar.update)
    index["score"] = expit(logits)
    patient = "patient_id" if index.get("patient_id", pd.Series()).notna().any() else None
    columns = Columns(label="label", score="score", split=args.split, patient=patient,
                      id=args.path_column)
    checked = check_predictions(index.rename(columns={"source": args.path_column}), groups,
                                columns, source=args.images, seeds=seeds)
    test = index[index[args.split] == "test"] if args.split else index
    looks = look(model, pixels, test, attributes=params.evaluate.groups, config=params.explain,
                 threshold=params.postprocess.fixed_threshold,
                 min_cell=params.evaluate.min_cell, layer=args.gradcam_layer, arch=args.arch,
                 device=device)
    print(f"audit: {len(index)} images scored with {args.model_file} ({model.kind}, "
          f"{spec.channels}x{spec.size}x{spec.size}); {len(looks.selection)} mapped"
          + (f" ({looks.note})" if looks.note else ""), file=sys.stderr)
    return checked, {"explain": looks.items, "absent": ABSENT}


def _check_options(args) -> None:
    if args.predictions:
        raise ValueError("give --predictions FILE or --model-file FILE, not both")
    for name in ("images", "root"):
        if not getattr(args, name):
            raise ValueError(f"--model-file needs --{name} (a table of images, and the folder "
                             "its paths are relative to)")
    given = [f"--{n.replace('_', '-')}" for n in NOT_WITH_A_MODEL_FILE if getattr(args, n)]
    if given:
        raise ValueError(f"{', '.join(given)}: options of a predictions table, not of "
                         "--model-file (the model's scores are computed, one model)")


def _images(args, params, groups: list[str], size: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The table's usable images (index with ``row``) and their pixels, as prepare makes them;
    each rejected image is said on stderr."""
    from tqdm import tqdm

    from biaslab.config import DataConfig
    from biaslab.data.prepare import check_usable, decode_source
    from biaslab.data.sources import load_source

    root, table = Path(args.root), Path(args.images).resolve()
    if not table.is_file():
        raise FileNotFoundError(f"--images: {args.images} not found")
    header = set(pd.read_csv(table, nrows=0).columns)
    derived = {"sex", "age", "age_group", "patient_id", args.patient}
    keep = [c for c in dict.fromkeys([*groups, args.split]) if c and c in header
            and c not in derived]
    data = DataConfig(source="csv", root=str(root), table=str(table),
                      path_column=args.path_column, label_column=args.label,
                      patient_column=args.patient or "patient_id", attributes=keep)
    src = load_source(data, root)
    pixels = np.zeros((len(src.index), size, size), dtype=np.uint8)
    with tqdm(total=len(src.index), unit="img", file=sys.stderr, desc="audit: preparing",
              disable=None) as bar:
        kept, rejected = decode_source(src, size, pixels, workers=params.prepare.workers,
                                       min_side=params.prepare.min_side,
                                       max_aspect=params.prepare.max_aspect, progress=bar.update)
    for row in rejected.itertuples():
        print(f"audit: warning: rejected {row.path}: {row.reason}", file=sys.stderr)
    check_usable(src.index["label"].to_numpy()[kept], rejected,
                 total=len(src.index) + len(src.rejected),
                 max_rejected_fraction=params.prepare.max_rejected_fraction,
                 where=f"--images {args.images}")
    index = src.index[kept].reset_index(drop=True)
    index.insert(0, "row", np.arange(len(index)))
    return index, pixels if kept.all() else pixels[kept]
