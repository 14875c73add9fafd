"""``biaslab``: the one command (the console script, and ``python -m biaslab``).

A subcommand is a module of :mod:`biaslab.cli` with a docstring (the description of
``biaslab CMD --help``), ``EXAMPLES`` (its Examples section), ``add_arguments(parser)`` and
``run(args)``, which returns the exit status. Adding one is that module and one line of
:data:`COMMANDS`. Only the module of the command given is imported: ``biaslab --help`` starts
no torch nor pandas, and a broken command cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, its line in `biaslab --help`: at most 64 characters, one line on 80 columns)
COMMANDS = {
    "train": ("biaslab.cli.train", "train a classifier on a table of image paths, outside DVC"),
    "predict": ("biaslab.cli.predict", "score a table of image paths with a trained model.pt"),
    "sweep": ("biaslab.cli.sweep", "sweep a param: one DVC experiment per value x seed"),
    "recover": ("biaslab.cli.recover", "ready the repo for `dvc repro` after a killed one"),
    "audit": ("biaslab.cli.audit", "audit your own model from its predictions or its model file"),
}
# what a command's own error is: one line, no traceback (a bug keeps its traceback); a
# params.yaml error (biaslab.config.ConfigError) is a ValueError
ERRORS = (ValueError, FileNotFoundError, KeyError)


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``biaslab``, with the options of ``command`` (the others' are not read)."""
    top = argparse.ArgumentParser(prog="biaslab", description="Audit image classifiers for "
                                  "shortcut learning and group unfairness.",
                                  epilog="`biaslab COMMAND --help` shows a command's options "
                                         "and examples.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, line) in COMMANDS.items():
        cmd = sub.add_parser(name, help=line, formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == command:
            module = importlib.import_module(module_name)
            cmd.description = module.__doc__
            cmd.epilog = "Examples:\n" + module.EXAMPLES
            module.add_arguments(cmd)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # the command is the first word that is no option: `biaslab` itself takes none with a value
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = parser(command).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return module.run(args)
    except ERRORS as exc:
        print(f"biaslab {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C (and, in a sweep, `kill`): one line, the usual status
        print(f"biaslab {args.command}: interrupted", file=sys.stderr)
        return 130
