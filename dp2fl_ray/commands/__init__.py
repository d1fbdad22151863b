"""One module per ``dp2fl-ray`` subcommand: ``add_arguments(parser)`` and ``cli_main(args)``."""
