"""``mrl-run``: every subcommand comes from the registry, the built-in ones
(:mod:`mrl_plugins.builtin.commands`) exactly as a plugin's (``register_commands``).

User mistakes (``UserError``) print one paragraph and exit 2, without a traceback; a full disk
that no command met with its own message is one paragraph and exit 1; anything else is a bug and
keeps its traceback. A bare recipe path means ``run``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

from .errors import UserError, is_disk_full

if TYPE_CHECKING:
    from .components import Command

FIRST = ("run", "validate", "plugins", "publish", "report", "index", "search", "demo", "export")
"""The order ``mrl-run --help`` lists the built-in subcommands in; plugins' follow, by name."""


def _parser(commands: dict[str, type[Command]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrl-run",
        description="Fine-tune sentence-transformers models with Matryoshka Representation Learning.",
        epilog="Examples: mrl-run recipes/quickstart.toml | mrl-run validate recipes/quickstart.toml "
        "--set train.epochs=2 | mrl-run plugins -v",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    order = [n for n in FIRST if n in commands] + sorted(n for n in commands if n not in FIRST)
    for name in order:
        cls = commands[name]
        command = sub.add_parser(name, help=cls.summary(), description=cls.summary())
        if getattr(cls, "intermixed", False):
            command.__class__ = IntermixedParser
        cls().add_arguments(command)
    return parser

class IntermixedParser(argparse.ArgumentParser):
    """A subcommand's parser that takes positionals between options (``search INDEX --json
    "query"``), as ``parse_intermixed_args`` does: needed where a positional takes ``nargs="*"``,
    which plain argparse fills (empty) at the first positional and then refuses the rest. A
    command asks for it with ``intermixed = True``."""

    _inner = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._inner:  # parse_known_intermixed_args calls back here, twice
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return super().parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False



def _commands() -> dict[str, type[Command]]:
    from .plugins import load_registry

    registry = load_registry()
    return {name: registry.get("command", name) for name in registry.names("command")}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        commands = _commands()
        if argv and ((argv[0] not in commands and not argv[0].startswith("-")) or argv[0] == "--resume"):
            argv.insert(0, "run")
        args = _parser(commands).parse_args(argv)
        code = commands[args.command]().run(args)
        sys.stdout.flush()  # a reader that left early is met here, by the handler below, not at exit
        return code
    except UserError as exc:
        if os.environ.get("MRL_DEBUG") == "1":
            traceback.print_exc()
        print(f"mrl-run: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mrl-run: interrupted; no output was written.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left early (mrl-run plugins -v | head): stop quietly, as cat does;
        # what is still buffered goes to /dev/null, or Python's flush at exit raises again (Python's docs, "signal")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        # a full disk that no command caught with its own message: every command writes through a
        # temporary name or folder that it removes on failure, so nothing finished was replaced
        if not is_disk_full(exc) or os.environ.get("MRL_DEBUG") == "1":
            raise
        where = f" writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
        print(f"mrl-run: error: the disk filled up{where}; what was being written was removed and nothing finished "
              "was replaced. Free some space and run the same command again.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
