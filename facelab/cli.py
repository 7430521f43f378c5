"""Command line: ``python -m facelab COMMAND ...``.

Each command group lives in the module that owns its domain and contributes an
``add_parser(subparsers)`` function; this file only assembles them and turns the
expected failures (missing data, bad parameters) into one-line messages.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from facelab import __version__
from facelab.paths import DataNotFoundError
from facelab.teachers import TeacherUnavailableError


def _command_groups() -> list[Callable[[argparse._SubParsersAction], None]]:
    from facelab import bookbuild, experiments, tables
    from facelab.bench import cli as bench_cli
    from facelab.data import cli as data_cli
    from facelab.eval import cli as eval_cli

    return [data_cli.add_parser, experiments.add_parser, bench_cli.add_parser, eval_cli.add_parser,
            tables.add_parser, bookbuild.add_parser]


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


def run_guarded(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command function, turning the expected failures into one line on stderr."""
    try:
        return int(func(args) or 0)
    except (DataNotFoundError, TeacherUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ValueError, KeyError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished steps are kept; rerun the same command to resume", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return run_guarded(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
