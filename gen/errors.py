"""Diagnostics in the one format the generator speaks: FILE:LINE:COL: error: MSG."""


class Pos:
    """A 1-based position in a spec file."""

    __slots__ = ("file", "line", "col")

    def __init__(self, file, line, col):
        self.file = file
        self.line = line
        self.col = col

    def __str__(self):
        return f"{self.file}:{self.line}:{self.col}"


class SpecError(Exception):
    """One error at a position; raised where going on makes no sense."""

    def __init__(self, pos, message):
        super().__init__(message)
        self.pos = pos
        self.message = message

    def __str__(self):
        return f"{self.pos}: error: {self.message}"


class Diagnostics:
    """Collects errors and warnings so that one run reports them all."""

    def __init__(self):
        self.errors = []
        self.warnings = []

    def error(self, pos, message):
        self.errors.append(SpecError(pos, message))

    def warning(self, pos, message):
        self.warnings.append((pos, f"{pos}: warning: {message}"))

    def files_in_error(self):
        return {e.pos.file for e in self.errors}

    def lines(self):
        """Every diagnostic, errors and warnings, in file and line order."""
        items = [(e.pos, str(e)) for e in self.errors] + list(self.warnings)
        items.sort(key=lambda i: (i[0].file, i[0].line, i[0].col))
        return [text for _, text in items]
