"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input (file, option, config), not a bug.

    The message must name the file, row, column or key at fault.
    """

    exit_code = 2
