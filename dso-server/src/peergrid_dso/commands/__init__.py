"""Subcommands of `peergrid-dso`, each a module with `add_arguments(parser)` and `run(args) -> int`."""
