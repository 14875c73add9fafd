"""params: validate the whole params.yaml, so that a typo anywhere stops the pipeline at once.

Every stage validates the whole file too, but DVC reruns a stage only when the keys it depends
on change: an unknown key (``dvc exp run -S +bias.foo=1``) changes none of them. This stage
depends on params.yaml as a whole file, so any edit reruns it. Its output never changes, so a
valid edit reruns nothing after it.
"""

import argparse

from biaslab import artifacts
from biaslab.config import load_config
from stages import run

MARKER = "params.yaml is valid\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="marker file, the same text every time")
    args = parser.parse_args()
    params = load_config("params.yaml")
    artifacts.write_text(MARKER, args.out)
    print(f"params: params.yaml is valid ({len(type(params).model_fields)} sections) "
          f"-> {args.out}")


if __name__ == "__main__":
    run(main, "params")
