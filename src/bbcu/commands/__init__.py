"""One module per ``bbcu`` verb; each exposes ``add_parser(subparsers)``."""
