"""The one `sopforge` command. Subcommands only parse arguments and call a stage function.

Each stage folder has a `cli.py` with `register(subparsers)`; those modules import nothing heavy
at import time (torch and friends are imported inside the command), so `sopforge --help` and
`sopforge ingest` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# stage module -> registers these subcommands
STAGES = ("sopforge.ingest.cli", "sopforge.train.cli", "sopforge.serve.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sopforge",
        description="Turn standard operating procedures into a tuned, format-obeying assistant.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "-w",
        "--workspace",
        default=None,
        help="workspace folder (default: $SOPFORGE_WORKSPACE or ./workspace)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # stage not built yet in this checkout
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `sopforge ingest docs/ --no-progress eval_fraction=0.3`: argparse stops a positional list at
    # the first option; a command that names its list in `trailing` takes the words after it too.
    trailing = getattr(args, "trailing", None)
    if extra and trailing and not any(x.startswith("-") for x in extra):
        setattr(args, trailing, [*(getattr(args, trailing) or []), *extra])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # user-facing errors carry their own clear message
        from sopforge.errors import UserError

        if isinstance(e, UserError):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
