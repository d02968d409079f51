"""CLI commands. Each module exposes ``add_parser(subparsers)`` and ``run(args) -> int``.

Rules for a command module: import nothing heavy (torch, diffusers, numpy) at module level, only
inside ``run``; raise :class:`editkit.errors.EditkitError` for problems the user can fix (the CLI
prints them as one line and exits with 2); return 0 on success. ``editkit.cli.COMMANDS`` lists the
module names; a module that does not exist yet is skipped.
"""
