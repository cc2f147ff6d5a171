"""Rendering: a FutureModel to the text of NAME.h, NAME.c and NAME.dot.

Rendering returns strings; only the CLI writes files. Snippets from the spec
are wrapped in #line directives so that the C compiler reports an error in
a snippet at the spec's file and line; the directive that returns to the
generated file is numbered after rendering, when its line is known.
"""
import os

import jinja2

from gen.validate import Snippet

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "templates")
RESTORE = "#line @@PD_RESTORE@@"


def c_string(s):
    """A C string literal's body for s."""
    return s.replace("\\", "\\\\").replace('"', '\\"')


def snip(s):
    """A spec snippet, fenced by #line directives (on lines of their own)."""
    if not isinstance(s, Snippet):
        return str(s)
    text = s.text.rstrip("\n")
    return f'\n#line {s.line} "{c_string(s.file)}"\n{text}\n{RESTORE}\n'


def comment(s):
    """Text safe inside a /* */ comment, continuation lines prefixed."""
    return s.replace("*/", "* /").replace("\n", "\n * ")


def _env():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters.update(snip=snip, comment=comment, cstr=c_string)
    return env


_ENV = None


def env():
    global _ENV
    if _ENV is None:
        _ENV = _env()
    return _ENV


def _number_lines(text, c_name):
    """Replaces each RESTORE marker with a #line back into the generated file."""
    out = []
    for i, line in enumerate(text.split("\n"), start=1):
        if line.strip() == RESTORE:
            line = f'#line {i + 1} "{c_string(c_name)}"'
        out.append(line)
    return "\n".join(out)


def render(model):
    """Returns {"h": ..., "c": ..., "dot": ...} for one future."""
    e = env()
    h = e.get_template("future.h.j2").render(f=model)
    c = e.get_template("future.c.j2").render(f=model)
    dot = e.get_template("future.dot.j2").render(f=model)
    return {"h": h, "c": _number_lines(c, model.c_name), "dot": dot}
