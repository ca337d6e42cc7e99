"""The one exception type for mistakes a user can fix (bad input, options, files).

The CLI prints such an error as one line and exits with status 2; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """A problem with the user's input; the message names it and says what to do."""
