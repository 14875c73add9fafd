"""``python -m biaslab.config --schema > params.schema.json``: regenerate the params schema."""

import argparse
import sys

from biaslab.config import schema_text

parser = argparse.ArgumentParser(prog="python -m biaslab.config", description=__doc__)
parser.add_argument("--schema", action="store_true",
                    help="print the JSON schema of params.yaml, generated from biaslab.config")
if not parser.parse_args().schema:
    parser.error("nothing to do: give --schema")
sys.stdout.write(schema_text())
