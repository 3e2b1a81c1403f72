"""The one exception type that means "the user gave us something wrong"."""


class UserError(Exception):
    """Bad input from the user: a file, an option, a job id.

    The CLI prints ``str(error)`` as one line and exits with status 2, without a
    traceback. The message names the file or option and says what was expected.
    """
