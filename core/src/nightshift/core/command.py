"""One command line for every service: the same options, ``--version``, one-line errors, warnings and a
summary when many inputs are given.

A service builds its ``nightshift-<task>`` command with :class:`CommandLine` and the option helpers
(``--output``, ``--weights``, ``--threshold``, ``--seed``, ``--set``, ``--real-dir``/``--no-real``) so
that an option means the same thing in every service. ``serve``, ``simulate-night`` and ``score-night``
are added by :meth:`CommandLine.serve_command` and :meth:`CommandLine.night_commands`.

Bad input is the user's to fix, so it gets one line on stderr (``nightshift-x: error: ...``) and exit
status 2, as argparse's usage errors do: the project's :class:`~nightshift.core.errors.InvalidInput` and
:class:`~nightshift.core.errors.NotFound`, a missing file, a directory where a file was expected, a
permission denied. The project's other errors (the store unreachable) and other operating-system errors (a full disk) get
one line and exit status 1. Anything
else is a bug and keeps its traceback. Warnings about the input (:func:`warn_input`: no WCS, an
unexpected unit) are one line each, ``nightshift-x: warning: ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

from nightshift.core.errors import InvalidInput, NightshiftError, NotFound
from nightshift.core.version import code_version

__all__ = ["CommandLine", "InputWarning", "Inputs", "EXIT_BAD_INPUT", "warn_input", "describe_error"]

EXIT_BAD_INPUT = 2
"""Exit status for input the user must fix (argparse uses it for usage errors too)."""

_BAD_INPUT = (InvalidInput, NotFound, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
_log = logging.getLogger("nightshift.command")

T = TypeVar("T")


class InputWarning(UserWarning):
    """Something in the user's input the command works around, but the user should know of."""


def warn_input(source: object, message: str) -> None:
    """Warn, once per call, that ``source`` (a file name) has ``message``."""
    warnings.warn(f"{source}: {message}", InputWarning, stacklevel=2)


def describe_error(error: BaseException) -> str:
    """One line for ``error``: the file and the operating system's reason for OS errors, else the message."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0] if isinstance(error, OSError) else " ".join(text.split())


@dataclasses.dataclass
class Inputs(Generic[T]):
    """The inputs of one command, read one at a time: a bad one is reported and skipped, the others go on,
    and the command ends with a summary and exit status 2 if any was bad."""

    paths: Sequence[Path]
    read: dict[Path, T] = dataclasses.field(default_factory=dict)
    failed: dict[Path, str] = dataclasses.field(default_factory=dict)

    def each(self, read_one: Callable[[Path], T]) -> list[tuple[Path, T]]:
        """``read_one`` of every path; a path whose input is bad is logged and left out."""
        for path in self.paths:
            try:
                self.read[path] = read_one(path)
            except _BAD_INPUT as error:
                message = describe_error(error)
                self.failed[path] = message if str(path) in message else f"{path}: {message}"
                _log.error(self.failed[path])
        if not self.read and self.failed:
            raise InvalidInput(f"none of the {len(self.paths)} inputs could be used")
        return list(self.read.items())

    def summary(self) -> dict[str, Any]:
        """Counts and the reasons of the failed inputs, for the command's JSON line."""
        return {"inputs": len(self.paths), "done": len(self.read), "failed": {str(p): reason for p, reason in self.failed.items()}}

    def exit_status(self) -> int:
        """0 if every input was used, else :data:`EXIT_BAD_INPUT`, after one summary line on stderr."""
        if len(self.paths) > 1:
            _log.info(f"{len(self.paths)} inputs: {len(self.read)} done, {len(self.failed)} failed")
        return EXIT_BAD_INPUT if self.failed else 0


def _override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIELD=JSON_VALUE, e.g. epochs=5")
    key, value = text.split("=", 1)
    return key, value


class CommandLine:
    """A service's command line: subcommands sharing one set of option names and one error convention."""

    def __init__(self, prog: str, description: str, *, distribution: str) -> None:
        self.prog = prog
        self.parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
        self.parser.add_argument("--version", action="version", version=f"%(prog)s {metadata.version(distribution)} ({code_version()})")
        self._commands = self.parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(self, name: str, run: Callable[[argparse.Namespace], int | None] | None, help: str) -> argparse.ArgumentParser:
        """A subcommand that calls ``run(args)``; its return value is the exit status (None: 0). ``run`` is
        None for a group whose own subcommands set it."""
        command = self._commands.add_parser(name, help=help, description=help)
        if run is not None:
            command.set_defaults(run=run)
        return command

    # -- options with one meaning in every service ------------------------------------------------

    @staticmethod
    def output(command: argparse.ArgumentParser, default: str | None, help: str, *, required: bool | None = None) -> None:
        """``--output DIR`` (``-o``; ``--out`` is accepted too): where the command writes. Required when there
        is no default, unless ``required=False`` (the command then picks one itself)."""
        command.add_argument("--output", "-o", "--out", dest="output", type=Path, default=None if default is None else Path(default),
                             required=default is None if required is None else required, metavar="DIR",
                             help=help + ("" if default is None else f" (default {default})"))

    @staticmethod
    def weights(command: argparse.ArgumentParser, help: str = "model weights with their JSON card beside them (default: the shipped model)") -> None:
        """``--weights FILE``."""
        command.add_argument("--weights", type=Path, default=None, metavar="FILE", help=help)

    @staticmethod
    def threshold(command: argparse.ArgumentParser) -> None:
        """``--threshold T``: the detection confidence threshold."""
        command.add_argument("--threshold", type=float, default=None, metavar="T", help="confidence threshold in [0, 1] (default: the model's)")

    @staticmethod
    def seed(command: argparse.ArgumentParser, default: int | None = 0) -> None:
        """``--seed N``: every random draw of the command follows from it."""
        command.add_argument("--seed", type=int, default=default, help="random seed" + ("" if default is None else f" (default {default})"))

    @staticmethod
    def overrides(command: argparse.ArgumentParser) -> None:
        """``--set FIELD=VALUE`` (repeatable) into ``args.set``, a dict of config overrides (JSON values)."""
        command.add_argument("--set", type=_override, action="append", default=[], metavar="FIELD=VALUE",
                             help="override a config field (JSON value); repeat for several")

    @staticmethod
    def real_data(command: argparse.ArgumentParser, default: Path) -> None:
        """``--real-dir DIR`` and ``--no-real``: where the real data of the task is, or not to use it."""
        command.add_argument("--real-dir", type=Path, default=None, metavar="DIR", help=f"the real data (default: {default} when present)")
        command.add_argument("--no-real", action="store_true", help="use no real data")

    @staticmethod
    def inputs(command: argparse.ArgumentParser, help: str) -> None:
        """Positional input files into ``args.inputs``."""
        command.add_argument("inputs", type=Path, nargs="+", metavar="FILE", help=help)

    # -- subcommands every service has ---------------------------------------------------------------

    def serve_command(self, serve: Callable[[int | None], None]) -> None:
        """``serve [--port P]``: ``serve(port)`` runs the service until SIGTERM."""
        command = self.command("serve", lambda args: serve(args.port), "serve the gRPC service (NIGHTSHIFT_GRPC_*, NIGHTSHIFT_S3_* when set)")
        command.add_argument("--port", type=int, default=None, help="gRPC port (default: NIGHTSHIFT_GRPC_PORT or 50051)")

    def night_commands(self, simulate: Callable[[argparse.Namespace], Any], score: Callable[[Path, Path], Any],
                       what: str) -> argparse.ArgumentParser:
        """``simulate-night --output KIT [--seed N]`` and ``score-night --kit KIT --catalogue CAT``, each printing
        one JSON line; returns the first for the service's own options."""
        def simulate_night(args: argparse.Namespace) -> None:
            print(json.dumps(simulate(args), sort_keys=True, default=float))

        def score_night(args: argparse.Namespace) -> None:
            print(json.dumps(score(args.kit, args.catalogue), sort_keys=True, default=float))

        simulate_command = self.command("simulate-night", simulate_night, f"write a simulated night's kit ({what}); one JSON line")
        self.output(simulate_command, None, "the kit's directory: night.json, raw/<field>/<band>.fits, truth/")
        self.seed(simulate_command)
        score_command = self.command("score-night", score_night, "score the night's merged catalogue against the kit's truth; one JSON line")
        score_command.add_argument("--kit", type=Path, required=True, help="the directory simulate-night wrote")
        score_command.add_argument("--catalogue", type=Path, required=True, help="the night's merged catalogue (FITS table)")
        return simulate_command

    # -- running -------------------------------------------------------------------------------------

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Parse ``argv``, run the subcommand, and turn bad input into one line and exit status 2."""
        args = self.parser.parse_args(argv)
        if hasattr(args, "set") and isinstance(args.set, list):
            args.set = dict(args.set)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLine(self.prog))
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)
        _log.propagate = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", InputWarning)
                warnings.showwarning = _show_warning
                return int(args.run(args) or 0)
        except _BAD_INPUT as error:
            _log.error(describe_error(error))
            return EXIT_BAD_INPUT
        except (NightshiftError, OSError) as error:  # the store unreachable, a full disk: one line, not the user's input
            _log.error(f"{type(error).__name__}: {describe_error(error)}" if isinstance(error, NightshiftError) else describe_error(error))
            return 1
        finally:
            _log.removeHandler(handler)


class _OneLine(logging.Formatter):
    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{self.prog}: {level}{record.getMessage()}"


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
    if issubclass(category, InputWarning):
        _log.warning(str(message))
    else:  # a library's own warning: one line too, with its category
        _log.warning(f"{category.__name__}: {' '.join(str(message).split())}")
