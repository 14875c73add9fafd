"""The default run's stability figure, per model: the std of the eval-mode validation balanced
accuracy over the second half of the epochs (biaslab.model.recipe.swing), against the bound.

Usage: python benchmarks/stability.py [METRICS_TRAIN_DIR] (default: metrics/train). Reads each
SCHEME/seedK/curves.csv there; prints one line per model and exits 1 when any is above the bound
(the train stage flags the same model in metrics/health/SCHEME/seedK.json). Not a timing.
"""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from biaslab.model.recipe import MAX_SWING, SWING_FIGURE, swing  # noqa: E402


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "metrics/train")
    files = sorted(root.glob("*/seed*/curves.csv"))
    if not files:
        print(f"no SCHEME/seedK/curves.csv under {root}: run the pipeline first", file=sys.stderr)
        return 2
    above = 0
    print(f"{'model':<20} {'epochs':>6} {'swing':>7} {'kept':>6}  second half of {SWING_FIGURE}")
    for path in files:
        curves = pd.read_csv(path)
        figure = swing(curves)
        kept = curves.loc[curves["val_loss"].idxmin(), SWING_FIGURE]
        half = curves[SWING_FIGURE].iloc[len(curves) // 2:]
        bad = figure is not None and figure > MAX_SWING
        above += bad
        shown = "   n/a" if figure is None else f"{figure:7.3f}"
        print(f"{path.parts[-3] + '/' + path.parts[-2]:<20} {len(curves):>6} {shown} "
              f"{kept:6.3f}  {' '.join(f'{v:.3f}' for v in half)}{'  ABOVE' if bad else ''}")
    print(f"bound {MAX_SWING}: {above} of {len(files)} model(s) above")
    return 1 if above else 0


if __name__ == "__main__":
    sys.exit(main())
