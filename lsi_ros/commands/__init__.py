"""Subcommands of the ``lsi`` CLI: one module each, with ``add_parser(subparsers)``."""
