"""Errors that the CLI turns into a one-line message and a nonzero exit (no traceback)."""


class LLMBlendError(Exception):
    """A user-facing error: bad input, bad config, an unreachable source."""


class InputError(LLMBlendError):
    """Bad input data, located by file, line and field."""

    def __init__(self, path, line=None, field=None, problem=""):
        self.path, self.line, self.field, self.problem = str(path), line, field, problem
        where = self.path
        if line is not None:
            where += f":{line}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {problem}")


class ConfigError(LLMBlendError):
    """A config key that is missing, unknown or of the wrong type."""
