"""Loading: YAML text to a node tree that keeps every node's position.

PyYAML's composer gives nodes with marks but silently keeps the last of two
equal mapping keys; this loader reports them. Scalars stay strings: a spec's
values are C text (`0`, `-1`, `O_RDONLY | O_CLOEXEC`), never YAML numbers.
"""
import yaml

from gen.errors import Pos, SpecError


class Node:
    """A YAML node: `value` is a str, a list of Node, or a dict str -> Node."""

    __slots__ = ("kind", "value", "pos", "style", "key_pos", "src_line", "indent")

    def __init__(self, kind, value, pos, style=None):
        self.kind = kind          # "scalar", "seq" or "map"
        self.value = value
        self.pos = pos
        self.style = style        # scalar style: None (plain), "'", '"', "|", ">"
        self.key_pos = {}         # for maps: key -> Pos of the key
        self.src_line = None      # for block scalars: 1-based line of the text
        self.indent = 0           # for block scalars: the text's indentation

    def line_of_text(self):
        """The 1-based spec line holding the first line of a scalar's text."""
        return self.src_line if self.src_line is not None else self.pos.line

    def pos_at(self, offset):
        """The spec position of character `offset` of a scalar's text."""
        before = self.value[:offset]
        nl = before.count("\n")
        col = offset - (before.rfind("\n") + 1)
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


def _block_text(lines, node):
    """The 1-based line where a block scalar's text begins, and its indent."""
    first = node.start_mark.line + 1  # 0-based: the line after the indicator
    indent = 0
    for line in lines[first:]:
        if line.strip():
            indent = len(line) - len(line.lstrip(" "))
            break
    return first + 1, indent


def _convert(file, lines, node):
    pos = _pos(file, node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        n = Node("scalar", node.value, pos, node.style)
        if node.style in ("|", ">"):
            n.src_line, n.indent = _block_text(lines, node)
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


def load(file, text):
    """Parses one spec; raises SpecError for malformed YAML or duplicate keys."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "malformed YAML"
        pos = _pos(file, mark) if mark else Pos(file, 1, 1)
        raise SpecError(pos, f"malformed YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise SpecError(Pos(file, 1, 1), f"malformed YAML: {e}") from None
    if root is None:
        raise SpecError(Pos(file, 1, 1), "empty spec: expected a mapping with 'future' and 'states'")
    if not isinstance(root, yaml.MappingNode):
        raise SpecError(_pos(file, root.start_mark), "a spec must be a mapping")
    return _convert(file, text.splitlines(), root)


def load_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SpecError(Pos(path, 1, 1), f"cannot read spec: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(Pos(path, 1, 1), "spec is not valid UTF-8") from None
    return load(path, text)
