"""The failures facelab expects and explains, as opposed to bugs.

Every exception here carries a message that names the problem and the fix. The command line
(:func:`run_guarded`) prints such an error as one line ``error: ...`` and exits 2;
anything else (a genuine bug) keeps its traceback.

Each class also derives from the built-in exception that code caught before it existed
(``ValueError``, ``KeyError``, ``FileNotFoundError``, ``RuntimeError``), so ``except ValueError``
in a caller keeps working.

=====================  =============================  ===========================================
class                  also a                         raised for
=====================  =============================  ===========================================
``UsageError``         ``ValueError``                 a bad argument or option value
``UnknownNameError``   ``ValueError``, ``KeyError``   a name that is not registered (dataset,
                                                      experiment, model, profile choice, paper)
``DataError``          ``ValueError``                 a file or prepared set that cannot be used
                                                      (malformed, damaged, unreadable image)
``MissingDataError``   ``FileNotFoundError``          a dataset, protocol file, prepared set or
                                                      stored result that is not there
``BusyError``          ``RuntimeError``               another process holds the folder's lock
=====================  =============================  ===========================================
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class FacelabError(Exception):
    """Base of the expected failures; the message says what to do."""


class UsageError(FacelabError, ValueError):
    """A bad argument or option value (unknown profile, malformed ``--input-shape``, ...)."""


class UnknownNameError(UsageError, KeyError):
    """A name that is not registered (dataset, experiment, model, paper, table)."""

    # KeyError would print the message in quotes; the message is a sentence.
    __str__ = Exception.__str__


class DataError(FacelabError, ValueError):
    """An input that cannot be used: a malformed protocol or manifest file, a damaged crop, an image
    that cannot be read, a prepared set too small for what is asked."""


class MissingDataError(FacelabError, FileNotFoundError):
    """Something facelab needs is not on disk: a dataset, one of its files, a prepared set, a result."""


class BusyError(FacelabError, RuntimeError):
    """Another process is writing the same output (it holds the folder's lock)."""


def run_guarded(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command function, turning facelab's expected failures into one line on stderr.

    A :class:`~facelab.errors.FacelabError` (missing data, a bad parameter, an unusable file) prints
    ``error: <message>`` and returns 2; Ctrl-C prints how to resume and returns 130. Any other
    exception is a bug and propagates with its traceback.
    """
    try:
        return int(func(args) or 0)
    except FacelabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished steps are kept; rerun the same command to resume", file=sys.stderr)
        return 130
