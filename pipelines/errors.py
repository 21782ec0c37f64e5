"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input (file, option, config), not a bug.

    The message must name the file, row, column or key at fault.
    """

    exit_code = 2


class DiskFull(UserError):
    """A write failed for lack of space (ENOSPC) or quota (EDQUOT); the old file is intact."""

    exit_code = 1

    def __init__(self, path, cause: OSError | None = None):
        self.path = path
        reason = (cause.strerror if cause is not None and cause.strerror else "no space left on device")
        super().__init__(f"cannot write {path}: {reason}. Nothing was half-written; free some space "
                         f"and rerun the same command (finished folds and epochs are kept)")
