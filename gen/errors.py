"""Diagnostics in the one format the generator speaks: FILE:LINE:COL: error: MSG.

A diagnostic is always one line: line breaks and other control characters in
a file name or in spec text quoted by a message are shown escaped.
"""
import difflib
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text):
    """text with every control character written as a backslash escape."""
    def esc(m):
        c = m.group(0)
        named = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
        return named.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
    return _CONTROL.sub(esc, str(text))


def did_you_mean(word, choices):
    """' (did you mean 'x'?)' for the choice closest to a misspelt word, or ''."""
    found = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean '{found[0]}'?)" if found else ""


class Pos:
    """A 1-based position in a spec file."""

    __slots__ = ("file", "line", "col")

    def __init__(self, file, line, col):
        self.file = file
        self.line = line
        self.col = col

    def __str__(self):
        return f"{one_line(self.file)}:{self.line}:{self.col}"


class SpecError(Exception):
    """One error at a position; raised where going on makes no sense."""

    def __init__(self, pos, message):
        super().__init__(message)
        self.pos = pos
        self.message = message

    def __str__(self):
        return f"{self.pos}: error: {one_line(self.message)}"


class Diagnostics:
    """Collects errors and warnings so that one run reports them all."""

    def __init__(self):
        self.errors = []
        self.warnings = []

    def error(self, pos, message):
        self.errors.append(SpecError(pos, message))

    def warning(self, pos, message):
        self.warnings.append((pos, f"{pos}: warning: {one_line(message)}"))

    def files_in_error(self):
        return {e.pos.file for e in self.errors}

    def lines(self):
        """Every diagnostic, errors and warnings, in file and line order."""
        items = [(e.pos, str(e)) for e in self.errors] + list(self.warnings)
        items.sort(key=lambda i: (i[0].file, i[0].line, i[0].col))
        return [text for _, text in items]
