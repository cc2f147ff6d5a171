"""Rendering: a FutureModel to the text of NAME.h, NAME.c and NAME.dot.

Rendering returns strings; only the CLI writes files. Snippets from the spec
are wrapped in #line directives so that the C compiler reports an error in
a snippet at the spec's file and line; the directive that returns to the
generated file is numbered after rendering, when its line is known.
"""
import hashlib
import os
import re
import types

import jinja2

from gen import __version__
from gen.errors import one_line
from gen.cscan import fits_one_line
from gen.spec import Snippet

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "templates")
RESTORE = "#line @@PD_RESTORE@@"


def c_string(s):
    """A C string literal's body for s, for #line directives and messages.

    Control characters become octal escapes, and a `?` after a `?` is
    escaped so that no trigraph can form (gcc warns under -Wall).
    """
    def esc(m):
        c = m.group(0)
        if c in '\\"':
            return "\\" + c
        if c == "?":
            return "\\?"
        return "".join(f"\\{b:03o}" for b in c.encode("utf-8"))
    return _C_STRING_ESC.sub(esc, s)


_C_STRING_ESC = re.compile(r'[\\"\x00-\x1f\x7f]|(?<=\?)\?')


def _line(s):
    return f'#line {s.line} "{c_string(s.file)}"'


def _indented(text, indent):
    pad = " " * indent
    return "\n".join(pad + l if l.strip() else "" for l in text.rstrip("\n").split("\n"))


def snip(s, indent=0):
    """Statements from the spec on lines of their own, fenced by #line, in
    a block whose closing brace is still the spec's: numbered as the
    snippet's last line, on a line of its own (that last line may end in a
    // comment). Code that ends mid-statement (a for without its body,
    `x =`) then meets that brace and is reported at the spec, instead of
    taking the generated code that follows as the rest of its statement.

    Must be placed at the start of a template line.
    """
    text = _indented(s.text, indent)
    pad = " " * max(indent - 4, 0)
    last = f'#line {s.line + text.count(chr(10))} "{c_string(s.file)}"'
    return f"{pad}{{\n{_line(s)}\n{text}\n{last}\n{pad}}}\n{RESTORE}"


def expr(s, indent=0):
    """An expression from the spec inside generated C (a condition, an
    initialiser): #line directives need lines of their own, so the
    expression gets one and the C around it resumes on the next. The
    templates put every such expression in parentheses: `a + b` times a
    scale must not become `a + b * 1000000`.
    """
    if not isinstance(s, Snippet):
        return str(s)
    return f"\n{_line(s)}\n{_indented(s.text, indent)}\n{RESTORE}\n{' ' * max(indent - 4, 0)}"


def inits(items, indent=0):
    """Assignments `self->NAME = (INIT);` of initialisers from the spec, as
    (NAME, Snippet) pairs, one a line: a run of them whose texts sit on
    consecutive spec lines shares one #line, a gap in the spec takes a new
    one, and the C after the last resumes under a restoring #line. An
    initialiser that cannot share a line (several lines, a // comment, a
    directive) is fenced on lines of its own, as expr does.

    Must be placed at the start of a template line.
    """
    pad = " " * indent
    out, last = [], None
    for name, s in items:
        if fits_one_line(s.text):
            if last is None or (s.file, s.line) != (last.file, last.line + 1):
                out.append(_line(s))
            out.append(f"{pad}self->{name} = ({s.text.strip()});")
            last = s
        else:
            if last is not None:
                out.append(RESTORE)
            last = None
            out.append(f"{pad}self->{name} = ({expr(s, indent + 4)});")
    if last is not None:
        out.append(RESTORE)
    return "\n".join(out)

def call_args(args, indent):
    """The trailing arguments of a call: spec snippets that share a spec
    line go under one #line; generator defaults follow unfenced. Each spec
    expression is parenthesised, so that a comma in it cannot make two
    arguments of one, whatever the helper does with it.
    """
    if not args:
        return ""
    groups = []
    for a in args:
        key = (a.file, a.line) if isinstance(a, Snippet) else None
        if groups and groups[-1][0] == key and key is not None:
            groups[-1][1].append(a)
        elif groups and key is None and groups[-1][0] is None:
            groups[-1][1].append(a)
        else:
            groups.append((key, [a]))
    pad = " " * indent
    lines = []
    for i, (key, items) in enumerate(groups):
        texts = ", ".join((f"({a.text.strip()})" if isinstance(a, Snippet) else str(a))
                          for a in items)
        comma = "," if i < len(groups) - 1 else ""
        if key is None:
            lines.append(pad + texts + comma)
        else:
            lines += [_line(items[0]), pad + texts + comma, RESTORE]
    tail = "\n" + pad if lines[-1] == RESTORE else ""
    return ",\n" + "\n".join(lines) + tail


def at(where, text, indent=0):
    """Generated text that stands for spec text (a typedef of output:, a
    prototype with the params' types) under a #line pointing at the spec,
    so that the compiler reports a bad type there. Lines of its own."""
    if where is None:
        return " " * indent + text
    return f"{_line(where)}\n{' ' * indent}{text}\n{RESTORE}"


def decls(items, indent=0):
    """Declarations as (where, text) pairs, one per line: those built from
    spec text are fenced by #line, one directive for a run of consecutive
    spec lines; `where` None marks generated ones. Lines of their own."""
    pad = " " * indent
    out, last = [], None
    for where, text in items:
        if where is None:
            if last is not None:
                out.append(RESTORE)
            last = None
        elif last is None or (where.file, where.line) != (last.file, last.line + 1):
            out.append(_line(where))
            last = where
        else:
            last = where
        out.append(pad + text)
    if last is not None:
        out.append(RESTORE)
    return "\n".join(out)


def comment(s):
    """Text safe inside a /* */ comment, continuation lines prefixed.

    A space goes between the characters of every `/*`, `*/` and `??`, so
    that spec text can neither end the comment nor warn under -Wcomment or
    -Wtrigraphs; other line breaks and control characters are escaped.
    """
    s = _COMMENT_BREAK.sub(" ", s)
    return "\n * ".join(one_line(l) for l in s.split("\n"))


def comment_line(s):
    """One-line text (a file name) safe inside a /* */ or // comment."""
    return comment(one_line(s))


_COMMENT_BREAK = re.compile(r"(?<=/)(?=\*)|(?<=\*)(?=/)|(?<=\?)(?=\?)")


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """The compiled templates kept in a directory, for the next run: each
    entry is keyed by its template's name (a fresh clone's or an install's
    templates share the entries of the same text) and checked against a
    checksum of the template's text and of what else decides the code it
    compiles to (salt: the Jinja2 version and the environment's options),
    so a template changed since, or another Jinja2 or option, compiles it
    again.
    Writes go through a temporary file and a rename, so runs side by side
    share one directory. An entry compiled from another tree's copy names
    that copy's file: a loaded entry is made to name this tree's, so that
    a traceback through the template points at the file that was rendered.
    A cache is only an optimisation: one that cannot be created, read or
    written, or an entry that does not load, is ignored and the template
    compiled as without it."""

    def __init__(self, directory, salt):
        super().__init__(directory)
        self.salt = salt

    def get_cache_key(self, name, filename=None):
        return hashlib.sha1(name.encode("utf-8")).hexdigest()

    def get_source_checksum(self, source):
        return hashlib.sha1((self.salt + "\0" + source).encode("utf-8")).hexdigest()

    def get_bucket(self, environment, name, filename, source):
        bucket = super().get_bucket(environment, name, filename, source)
        if bucket.code is not None and filename is not None:
            bucket.code = _refiled(bucket.code, filename)
        return bucket

    def load_bytecode(self, bucket):
        try:
            super().load_bytecode(bucket)
        except Exception:
            bucket.reset()

    def dump_bytecode(self, bucket):
        try:
            os.makedirs(self.directory, exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _refiled(code, filename):
    """code and every code object nested in it (its functions, a block's,
    a macro's), made to name filename as the file they were compiled from."""
    consts = tuple(_refiled(c, filename) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


# The Environment's options that change what a template compiles to.
_COMPILE_OPTIONS = ("block_start_string", "block_end_string", "variable_start_string",
                    "variable_end_string", "comment_start_string", "comment_end_string",
                    "line_statement_prefix", "line_comment_prefix", "trim_blocks",
                    "lstrip_blocks", "newline_sequence", "keep_trailing_newline",
                    "optimized", "autoescape", "undefined", "extensions")


def _option_text(v):
    """An option's value as text that is the same in every run: classes and
    functions by name, extensions by their names, never an address."""
    if isinstance(v, dict):
        return repr(sorted(v))
    if callable(v):
        return f"{v.__module__}.{v.__qualname__}"
    return repr(v)


def _template_cache(env):
    """The cache of compiled templates POLLDROP_GEN_CACHE names (the tree's
    Makefile sets build/gen-cache) for env, or None: compiling the templates
    is most of a short run's time. The directory is trusted as build output
    is."""
    where = os.environ.get("POLLDROP_GEN_CACHE")
    if not where:
        return None
    salt = repr((jinja2.__version__,) +
                tuple((o, _option_text(getattr(env, o))) for o in _COMPILE_OPTIONS))
    return _TemplateCache(where, salt)


def _env():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.bytecode_cache = _template_cache(env)
    env.globals["version"] = f"polldrop-gen {__version__}"
    env.filters.update(snip=snip, expr=expr, inits=inits, call_args=call_args, at=at,
                       decls=decls,
                       comment=comment, comment_line=comment_line, cstr=c_string)
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
    h = _number_lines(e.get_template("future.h.j2").render(f=model), model.h_path)
    c = e.get_template("future.c.j2").render(f=model)
    dot = e.get_template("future.dot.j2").render(f=model)
    return {"h": h, "c": _number_lines(c, model.c_name), "dot": dot}


def render_harness(model):
    """The C text of the Check test skeleton for `--harness`."""
    return env().get_template("harness_test.c.j2").render(
        name=model.name, futures=[model], spec_path=model.spec_path)


def render_stats(models):
    """The C text of the layout probe for `--stats`."""
    return env().get_template("stats.c.j2").render(futures=models)
