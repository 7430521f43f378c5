"""Command line: ``python -m facelab COMMAND ...``.

Each command group lives in the module that owns its domain and contributes an
``add_parser(subparsers)`` function; this file only assembles them and turns the
expected failures (:class:`facelab.errors.FacelabError`: missing data, bad parameters) into
one-line messages.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from facelab import __version__
from facelab.errors import run_guarded


def _command_groups() -> list[Callable[[argparse._SubParsersAction], None]]:
    from facelab import bookbuild, comparison, experiments, resultsdiff
    from facelab.bench import cli as bench_cli
    from facelab.data import cli as data_cli
    from facelab.eval import cli as eval_cli

    return [data_cli.add_parser, experiments.add_parser, bench_cli.add_parser, eval_cli.add_parser,
            comparison.add_parser, resultsdiff.add_parser, bookbuild.add_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m facelab",
        description="facelab: models, data, measurements and the book of lightweight face recognition.",
    )
    parser.add_argument("--version", action="version", version=f"facelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _command_groups():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return run_guarded(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
