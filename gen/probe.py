"""The name probe: asks the C compiler which names the generated code cannot use.

A name can break generated C in two ways that no deny list keeps up with:
a global the generated code declares (`printf`'s future type `printf`,
`size_t`, `FILE`, `io_uring`) is already declared by a header the generated
code includes, or a member name is a macro (`unix`, `errno`, `EOF`,
`alignas`) that does not survive preprocessing. Instead of listing them, the
probe compiles one small file with $CC against the same headers the
generated code includes and lets the compiler say which lines fail:

    typedef enum NAME NAME;        conflicts with any declared ordinary
                                   identifier or tag NAME, or a macro NAME
    struct pd__mK { int NAME; };   fails when NAME is a macro that does not
                                   expand to a plain identifier

It runs once per generator run over every name of every spec (its answers
are also kept for the life of the process, so the test suite pays once per
name). Without a working C compiler the probe reports nothing: the
generated code would not be compiled there either.
"""
import os
import re
import shlex
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where polldrop.h is: in the repository, and in the install, where the
# generator is PREFIX/share/polldrop/gen and the headers PREFIX/include/polldrop.
RUNTIME_DIRS = [os.path.join(ROOT, "runtime"),
                os.path.join(ROOT, os.pardir, os.pardir, "include", "polldrop")]
# What polldrop.h itself includes, for when it cannot be found.
RUNTIME_FALLBACK = ["<stdatomic.h>", "<liburing.h>"]


def _headers():
    """The system headers the generated .h and .c include, read from the
    templates so that the probe keeps in step with them, then polldrop.h
    (which brings liburing) as a -I directory and a header."""
    found = []
    for t in ("future.h.j2", "future.c.j2"):
        with open(os.path.join(ROOT, "templates", t), encoding="utf-8") as f:
            found += re.findall(r"^#include (<[^<>\s]+>)\s*$", f.read(), re.M)
    headers = list(dict.fromkeys(found))
    for d in RUNTIME_DIRS:
        if os.path.isfile(os.path.join(d, "polldrop.h")):
            return headers + ['"polldrop.h"'], ["-I", os.path.normpath(d)]
    return headers + RUNTIME_FALLBACK, []


HEADERS, INCLUDE_FLAGS = _headers()

_cache = {}   # (cc, headers, kind, name) -> reason or None


def _compile(cc, headers, lines):
    """Compiles the probe; returns the set of 1-based line numbers in error,
    or None when the compiler could not run or failed before those lines."""
    head = [f"#include {h}" for h in headers]
    text = "\n".join(head + lines) + "\n"
    with tempfile.TemporaryDirectory(prefix="pd-probe-") as d:
        src = os.path.join(d, "probe.c")
        with open(src, "w", encoding="utf-8") as f:
            f.write(text)
        cmd = [*shlex.split(cc), "-std=gnu11", "-fsyntax-only", "-fmax-errors=0",
               "-ftrack-macro-expansion=0", *INCLUDE_FLAGS, src]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                               timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
    bad = set()
    for m in re.finditer(r"^" + re.escape(src) + r":(\d+):\d+: (?:fatal )?error:",
                         r.stderr, re.M):
        line = int(m.group(1))
        if line <= len(head):
            return None     # an include failed: the answers would mean nothing
        bad.add(line - len(head))
    if r.returncode != 0 and not bad:
        return None
    return bad


def check(globals_, members, includes=()):
    """Returns {name: reason} for the names that would break generated C.

    `globals_` are names the generated code declares at file scope,
    `members` are names it uses as struct members, parameters and locals.
    `includes` are the specs' own <system> headers; if one of them cannot be
    found, the probe falls back to the generated code's own headers.
    """
    cc = os.environ.get("CC", "cc")
    result = {}
    for headers in (HEADERS + sorted(set(includes) - set(HEADERS)), HEADERS):
        headers = list(headers)
        key = (cc, tuple(headers))
        todo = [("g", n) for n in sorted(set(globals_))] + \
               [("m", n) for n in sorted(set(members))]
        todo = [t for t in todo if key + t not in _cache]
        if todo:
            lines = [f"typedef enum {n} {n};" if k == "g" else
                     f"struct pd__m{i} {{ int {n}; }};" for i, (k, n) in enumerate(todo)]
            bad = _compile(cc, headers, lines)
            if bad is None:
                if headers == HEADERS:
                    return {}
                continue
            for i, t in enumerate(todo):
                _cache[key + t] = (("already declared by the C headers the "
                                    "generated code includes, or a macro") if t[0] == "g"
                                   else "a macro of the C compiler or headers") \
                    if i + 1 in bad else None
        for n in globals_:
            if _cache.get(key + ("g", n)):
                result[n] = _cache[key + ("g", n)]
        for n in members:
            if _cache.get(key + ("m", n)):
                result[n] = _cache[key + ("m", n)]
        return result
    return result
