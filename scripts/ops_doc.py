"""Writes the op table of docs/spec-language.md from gen/ops.py.

Usage: python3 scripts/ops_doc.py [docs/spec-language.md]   (`make ops-doc`)

The table sits between the two marker comments below; the rest of the file
is left as it is. tests/test_ops.py fails while the committed table is not
this script's output.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gen.ops import EPOLL, OPS  # noqa: E402

BEGIN = "<!-- op table: written by scripts/ops_doc.py from gen/ops.py; do not edit -->"
END = "<!-- end of op table -->"


def _arg(a):
    text = f"`{a.name}` {a.ctype}"
    if a.default is not None:
        text += f" = `{a.default}`"
    if a.doc:
        text += f" ({a.doc})"
    return text


def table():
    """The markdown of the table, markers included."""
    rows = [BEGIN, "",
            "| op | arguments, in order (`= default`) | `res` on success | notes | on the epoll engine |",
            "|---|---|---|---|---|"]
    for op in OPS.values():
        args = "; ".join(_arg(a) for a in op.args) or "—"
        notes = [op.doc]
        if op.returns_fd:
            notes.append("returns an fd: closed if reaped while cancelled")
        if op.since:
            notes.append(f"Linux {op.since}")
        if op.headers:
            notes.append("the generated code includes " + ", ".join(op.headers))
        rows.append(f"| `{op.name}` | {args} | {op.result or '0'} | {'; '.join(notes)} | "
                    f"{EPOLL[op.name]} |")
    rows += ["", END]
    return "\n".join(rows)


def rewrite(text):
    """text with its op table replaced; ValueError without the markers."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("the op table's markers are missing")
    return text[:start] + table() + text[end + len(END):]


def main(argv):
    path = argv[1] if len(argv) > 1 else os.path.join("docs", "spec-language.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        new = rewrite(text)
    except ValueError as e:
        print(f"{path}: error: {e}", file=sys.stderr)
        return 1
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
