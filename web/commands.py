"""Subcommands this package adds to `teleroom` (appended to broker.cli.EXTRA_COMMANDS on import)."""
