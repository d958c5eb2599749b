"""The `teleroom` command: the command line's composition root.

As `broker.app` mounts the routes of every package, this module adds the subcommands of every
package (each command module's `add_commands`) and chooses what `therapist add` runs when it
creates a therapist: the same hooks the API runs. Nothing registers itself here on import.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import signaling.commands
import web.commands
from broker import commands
from broker.settings import SettingsError
from broker.therapists import TherapistCreatedHook
from web.password_links import invite_on_create

# What creating a therapist from the command line also does, inside the same transaction, as the
# API does (the web package adds the same hook to the app): issue the one-time link where the
# therapist chooses a password.
THERAPIST_CREATED_HOOKS: tuple[TherapistCreatedHook, ...] = (invite_on_create,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="teleroom", description="Self-hostable teletherapy.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.add_commands(sub, therapist_hooks=THERAPIST_CREATED_HOOKS)
    signaling.commands.add_commands(sub)
    web.commands.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except SettingsError as exc:
        print(f"teleroom: configuration error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    # Piped into `head`, a command ends quietly instead of with BrokenPipeError. Not `serve`: a
    # server must never die of a write to a closed socket (a client gone, a killed database), so it
    # keeps Python's SIG_IGN and sees EPIPE as an error it handles.
    if build_parser().parse_args().command != "serve":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
