"""Loading: YAML text to a node tree that keeps every node's position.

PyYAML's composer gives nodes with marks but silently keeps the last of two
equal mapping keys; this loader reports them. Scalars stay strings: a spec's
values are C text (`0`, `-1`, `O_RDONLY | O_CLOEXEC`), never YAML numbers.

The loader bounds its own work before building anything: anchors, aliases
and tags are refused while composing (an alias is never expanded, so a
"billion laughs" spec costs no more than its size), nesting deeper than
MAX_DEPTH is refused, and every PyYAML error becomes one diagnostic at the
spec's FILE:LINE:COL with a hint for the usual YAML traps of C snippets.
"""
import bisect
import re

import yaml

from gen.cscan import line_comment
from gen.errors import Pos, SpecError

# Deeper than any sensible spec (the project's own go 6 levels deep); well
# below what Python's recursion limit allows the composer and the loader.
MAX_DEPTH = 64


class Node:
    """A YAML node: `value` is a str, a list of Node, or a dict str -> Node."""

    __slots__ = ("kind", "value", "pos", "style", "key_pos", "src_line", "indent",
                 "comment", "folded_comment", "_starts")

    def __init__(self, kind, value, pos, style=None):
        self.kind = kind          # "scalar", "seq" or "map"
        self.value = value
        self.pos = pos
        self.style = style        # scalar style: None (plain), "'", '"', "|", ">"
        self.key_pos = {}         # for maps: key -> Pos of the key
        self.src_line = None      # for block scalars: 1-based line of the text
        self.indent = 0           # for block scalars: the text's indentation
        self.comment = None       # for plain scalars: (Pos, text) of a YAML
                                  # comment after the value on its last line
        self.folded_comment = None  # for scalars YAML folds: Pos of a // comment
                                    # that lines after it are folded into
        self._starts = None       # offsets where each line of value begins

    def line_of_text(self):
        """The 1-based spec line holding the first line of a scalar's text."""
        return self.src_line if self.src_line is not None else self.pos.line

    def pos_at(self, offset):
        """The spec position of character `offset` of a scalar's text.

        Line starts are computed once per node, so that finding the positions
        of many macros in one long snippet stays linear.
        """
        if self._starts is None:
            self._starts = [0] + [m.end() for m in re.finditer("\n", self.value)]
        nl = bisect.bisect_right(self._starts, offset) - 1
        col = offset - self._starts[nl]
        if self.src_line is not None:
            return Pos(self.pos.file, self.src_line + nl, self.indent + col + 1)
        if nl:
            return self.pos
        quote = 1 if self.style in ("'", '"') else 0
        return Pos(self.pos.file, self.pos.line, self.pos.col + quote + col)

    def describe(self):
        return {"scalar": "a scalar", "seq": "a list", "map": "a mapping"}[self.kind]


def _pos(file, mark):
    return Pos(file, mark.line + 1, mark.column + 1)


class _Loader(yaml.SafeLoader):
    """A composer that refuses what would let a small spec do unbounded work.

    The checks run on parser events, before the composer builds (or, for an
    alias, would share) a node: no anchors, no aliases, no explicit tags, and
    at most MAX_DEPTH levels of nesting.
    """

    def __init__(self, text, file):
        super().__init__(text)
        self.pd_file = file
        self.pd_depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        where = _pos(self.pd_file, event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            raise SpecError(where, f"YAML alias '*{event.anchor}' is not allowed in a "
                            "spec (anchors and aliases are refused); if this is C text, "
                            "quote the value or use a block scalar (|)")
        if getattr(event, "anchor", None) is not None:
            raise SpecError(where, f"YAML anchor '&{event.anchor}' is not allowed in a "
                            "spec (anchors and aliases are refused); if this is C text, "
                            "quote the value or use a block scalar (|)")
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise SpecError(where, f"YAML tag '{tag}' is not allowed in a spec; if this "
                            "is C text, quote the value or use a block scalar (|)")
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if self.pd_depth >= MAX_DEPTH:
                raise SpecError(where, f"nesting deeper than {MAX_DEPTH} levels")
            self.pd_depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.pd_depth -= 1
        return super().compose_node(parent, index)


def _block_text(lines, node):
    """The 1-based line where a block scalar's text begins, and its indent.

    The indent is what YAML took off each line: the first line with text
    has it plus the spaces its text keeps (some, when an indentation
    indicator such as |2 sets the indent below the text's).
    """
    first = node.start_mark.line + 1  # 0-based: the line after the indicator
    indent = 0
    kept = next((len(t) - len(t.lstrip(" ")) for t in node.value.split("\n") if t.strip()), 0)
    for line in lines[first:]:
        if line.strip():
            indent = len(line) - len(line.lstrip(" ")) - kept
            break
    return first + 1, indent


def _trailing_comment(file, lines, end):
    """The YAML comment that follows a plain scalar on its line, if any:
    C text after ` #` is silently dropped by YAML, so it is worth a warning."""
    if end.line >= len(lines):
        return None
    rest = lines[end.line][end.column:]
    m = re.match(r"\s+(#.*)", rest)
    if not m:
        return None
    return Pos(file, end.line + 1, end.column + m.start(1) + 1), m.group(1).rstrip()


def _folded_comment(file, lines, node):
    """The position of a // comment in a scalar that YAML folds (plain,
    quoted or >), on a source line that another line with text follows: the
    folded value puts that line's text after the comment, out of the C."""
    start, end = node.start_mark, node.end_mark
    first = start.line + 1 if node.style == ">" else start.line
    segments = []
    for i in range(first, min(end.line, len(lines) - 1) + 1):
        # (A quoted value's text begins after its opening quote.)
        lo = start.column + (node.style in ("'", '"')) if i == start.line else 0
        hi = end.column if i == end.line else len(lines[i])
        if lines[i][lo:hi].strip():
            segments.append((i, lo, lines[i][lo:hi]))
    for i, lo, text in segments[:-1]:
        at = line_comment(text)
        if at is not None:
            return Pos(file, i + 1, lo + at + 1)
    return None


def _convert(file, lines, node):
    pos = _pos(file, node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        n = Node("scalar", node.value, pos, node.style)
        if node.style in ("|", ">"):
            n.src_line, n.indent = _block_text(lines, node)
        elif node.style is None:
            n.comment = _trailing_comment(file, lines, node.end_mark)
        if node.style != "|":
            n.folded_comment = _folded_comment(file, lines, node)
        return n
    if isinstance(node, yaml.SequenceNode):
        return Node("seq", [_convert(file, lines, c) for c in node.value], pos)
    if isinstance(node, yaml.MappingNode):
        out = Node("map", {}, pos)
        for key, val in node.value:
            kpos = _pos(file, key.start_mark)
            if not isinstance(key, yaml.ScalarNode):
                raise SpecError(kpos, "mapping keys must be plain names")
            if key.value in out.value:
                first = out.key_pos[key.value]
                raise SpecError(kpos, f"duplicate key '{key.value}' "
                                      f"(first defined at line {first.line})")
            out.key_pos[key.value] = kpos
            out.value[key.value] = _convert(file, lines, val)
        return out
    raise SpecError(pos, "unsupported YAML node")


# A value on a line that begins with a YAML indicator: anchor, alias or tag.
_INDICATOR_VALUE = re.compile(r"(?:^|[:\-,\[{?])\s+([&*!])|^\s*([&*!])")
# A value that begins with a quote and goes on after the closing quote.
_QUOTED_THEN_MORE = re.compile(r"""(?:^|[:\-,\[{])\s+(["'])""")


def _hint(e, lines):
    """A short remedy for the YAML errors that C snippets typically cause."""
    problem = e.problem or ""
    context = e.context or ""
    marks = [m for m in (e.context_mark, e.problem_mark) if m is not None]
    text = " ".join(lines[m.line] for m in marks if m.line < len(lines))
    if "mapping values are not allowed" in problem:
        return ("a ': ' inside a plain value starts a mapping: quote the value or use "
                "a block scalar (|)")
    if any(w in context for w in ("anchor", "alias", "tag")) or _INDICATOR_VALUE.search(text):
        return ("'&', '*' or '!' at the start of a value begins a YAML anchor, alias or "
                "tag: quote the value or use a block scalar (|)")
    if "cannot start any token" in problem:
        if "'\\t'" in problem:
            return "indent with spaces: YAML does not allow tabs there"
        return "'@', '`' and '%' cannot start a plain value: quote the value"
    if "quoted scalar" in context:
        return ("a quoted value must end at its closing quote; for C text that starts "
                "with a quote, quote the whole value ('\"bye\\n\"')")
    if "found '<scalar>'" in problem and _QUOTED_THEN_MORE.search(text):
        return ("text follows a closing quote: quote the whole value ('\"bye\\n\"' for a "
                "C string literal) or use a block scalar (|)")
    return None


def _reader_pos(file, text, position):
    """The FILE:LINE:COL of character `position` of text."""
    before = text[:position]
    line = before.count("\n") + 1
    return Pos(file, line, position - (before.rfind("\n") + 1) + 1)


# Characters that YAML 1.1 (PyYAML) takes as line breaks and C compilers
# and editors do not: their lines would disagree with YAML's marks.
_YAML_ONLY_BREAK = re.compile("[\x85\u2028\u2029]")


def load(file, text):
    """Parses one spec; raises SpecError for malformed YAML or duplicate keys."""
    odd = _YAML_ONLY_BREAK.search(text)
    if odd:
        raise SpecError(_reader_pos(file, text, odd.start()),
                        f"character U+{ord(odd.group(0)):04X} is a line break to YAML but "
                        "not to C: write it as an escape")
    lines = re.split(r"\r\n|\r|\n", text)
    loader = None
    try:
        loader = _Loader(text, file)
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "malformed YAML"
        pos = _pos(file, mark) if mark else Pos(file, 1, 1)
        hint = _hint(e, lines)
        raise SpecError(pos, f"malformed YAML: {problem}"
                        + (f" ({hint})" if hint else "")) from None
    except yaml.reader.ReaderError as e:
        what = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        raise SpecError(_reader_pos(file, text, e.position),
                        f"malformed YAML: character {what} is not allowed in YAML "
                        "(write it as an escape in C)") from None
    except yaml.YAMLError as e:
        raise SpecError(Pos(file, 1, 1), f"malformed YAML: {type(e).__name__}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise SpecError(Pos(file, 1, 1), "empty spec: expected a mapping with 'future' and 'states'")
    if not isinstance(root, yaml.MappingNode):
        raise SpecError(_pos(file, root.start_mark), "a spec must be a mapping")
    return _convert(file, lines, root)


def load_file(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SpecError(Pos(path, 1, 1), f"cannot read spec: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = _newlines(data[:e.start].decode("utf-8"))
        raise SpecError(_reader_pos(path, before, len(before)),
                        f"spec is not valid UTF-8: byte 0x{data[e.start]:02x}") from None
    return load(path, _newlines(text))


def _newlines(text):
    """text with its line ends made \\n, as a file opened in text mode reads."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
