"""The one exception type for errors a user can cause (bad file, bad option, missing data set)."""


class UserError(Exception):
    """An error the CLI reports as one line and a non-zero exit status, without a traceback."""
