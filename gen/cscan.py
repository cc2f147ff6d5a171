"""C-text scanning: what the generator reads in spec snippets, without a C parser.

Spec text is C that the generator pastes into generated functions. These
helpers look at it only as far as validation, linking and the model need:
comments and literals blanked out with every offset kept (strip_c), the
polldrop macros a snippet calls, the members it reaches through self, a
bracket without a partner, a type's array suffix, the number of a call's
arguments, and whether code can fall off its end. Each stays linear in the
length of the text, whatever the text.
"""
import re

MACRO = re.compile(r"\b(GOTO|YIELD|RETURN|DONE|START|KEEP|STOP|CANCELLED|SPAWN)\b\s*(\()?")
# The future SPAWN(F, ...) names, and where its arguments begin.
SPAWN_ARG = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?=[,)])")
# Macros over an array of child futures: their first argument names it.
ARRAY_MACRO = re.compile(r"\b(START|IDLE|ACTIVE|OUTPUT|COMPLETED|COUNT)\s*\(\s*"
                         r"([A-Za-z_][A-Za-z0-9_]*)?")
SELF_MEMBER = re.compile(r"\bself\s*->\s*([A-Za-z_][A-Za-z0-9_]*)")
MACRO_ARG = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)")

# How deep the fall-through check follows nested statements (blocks, if and
# else): it recurses, up to three calls a level, and Python's stack is
# bounded. 127 is the nesting of blocks C compilers must take (C11 5.2.4.1).
MAX_NESTING = 127


def split_array(ctype):
    """Splits a trailing array suffix off a type: 'char[4] [8]' gives
    ('char', '[4][8]'). Scans from the end, so it stays linear in the
    length of the type whatever the text."""
    dims, rest = [], ctype.rstrip()
    while rest.endswith("]"):
        start = rest.rfind("[")
        inner = rest[start + 1:-1]
        if start < 0 or not inner or "]" in inner:
            break
        dims.append("[" + "".join(inner.split()) + "]")
        rest = rest[:start].rstrip()
    if not dims:
        return ctype, ""
    return rest.strip(), "".join(reversed(dims))


def outer_const(ctype):
    """Whether a C type (without an array suffix) is const itself, not only
    what it points to: 'const int', 'int const' and 'char *const' are;
    'const char *' is not. Read from the tokens after the last '*' of a
    pointer (all of them for no pointer); a pointer to function is taken
    as not const."""
    tokens = re.findall(r"\*|\(|\)|[A-Za-z_]\w*", strip_c(ctype))
    star = max((i for i, tok in enumerate(tokens) if tok == "*"), default=-1)
    outer = tokens[star + 1:]
    return "const" in outer and "(" not in outer


def unbalanced(text):
    """(offset, message) of the first bracket of C text that has no partner,
    of a comment it leaves open or of a directive that reaches beyond it
    (bad_directive), or None. Spec text is pasted into generated functions:
    a stray brace would close one, and the compiler would blame the
    generated code."""
    comment = open_comment(text)
    if comment is not None:
        return comment, "'/*' is not closed"
    directive = bad_directive(text)
    if directive is not None:
        return directive
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    clean = strip_c(text)
    for i, c in enumerate(undigraph(clean)):
        if c in "([{":
            stack.append((i, c))
        elif c in pairs:
            if not stack or stack[-1][1] != pairs[c]:
                return i, f"'{_spelt(clean, i)}' without a matching '{pairs[c]}'"
            stack.pop()
    if stack:
        i, c = stack[-1]
        return i, f"'{_spelt(clean, i)}' is not closed"
    return None


_DIGRAPH = re.compile(r"%:%:|%:|<%|%>|<:|:>")
_DIGRAPH_AS = {"<%": "{ ", "%>": "} ", "<:": "[ ", ":>": "] "}


def undigraph(clean):
    """Stripped C text (strip_c) with the bracket digraphs <% %> <: :> written
    as the brackets C reads them as, every offset kept. The text is matched
    from the left, as the compiler's longest-token rule does: in %:> the %:
    is a #, not the start of :>."""
    return _DIGRAPH.sub(lambda m: _DIGRAPH_AS.get(m.group(0), m.group(0)), clean)


def _spelt(clean, i):
    """The bracket at offset i of stripped text as the spec spells it."""
    return clean[i:i + 2] if clean.startswith(tuple(_DIGRAPH_AS), i) else clean[i]


# A preprocessor directive's introducer and name: # or its digraph %:,
# then a name or (the GNU line marker) a number.
DIRECTIVE = re.compile(r"[ \t]*(#|%:)[ \t]*([A-Za-z_]\w*|[0-9]+)?")


def bad_directive(text):
    """(offset, message) of the first preprocessor directive of C text that
    would reach beyond the snippet, or None.

    Snippets are pasted between generated code: a conditional opened in one
    and closed in another (or never) would remove the generated code between
    them without a word from the compiler, and a #line (or a GNU line
    marker) would take the mapping of the lines after it away from the
    #line the generator puts around every snippet. A macro the snippet
    defines would reach the generated code after it (a res or cx of its own
    breaks the next state), and an #undef could undo the generator's own
    (OP, GOTO): a snippet undefines what it defines, and nothing else.
    Conditionals and macros that begin and end within the snippet are the
    snippet's own business.
    """
    opened = []
    defined = {}
    lines = strip_c(text).split("\n")
    offset, continued = 0, False
    for line in lines:
        start, offset = offset, offset + len(line) + 1
        if continued:
            continued = line.rstrip().endswith("\\")
            continue
        continued = line.rstrip().endswith("\\")
        m = DIRECTIVE.match(line)
        if not m:
            continue
        at = start + m.start(1)
        name = m.group(2) or ""
        shown = (m.group(1) + name) if not name.isdigit() else f"# {name}"
        if name == "line" or name.isdigit():
            return at, (f"'{shown}' is not allowed: the generator maps spec text to "
                        "the spec with #line")
        if name in ("if", "ifdef", "ifndef"):
            opened.append((at, shown))
        elif name in ("elif", "else", "endif"):
            if not opened:
                return at, f"'{shown}' without a matching '#if'"
            if name == "endif":
                opened.pop()
        elif name in ("define", "undef"):
            macro = re.match(r"[ \t]+([A-Za-z_]\w*)", line[m.end():])
            if macro is None:
                continue
            shown = f"{m.group(1)}{name} {macro.group(1)}"
            if name == "define":
                defined.setdefault(macro.group(1), (at, shown))
            elif defined.pop(macro.group(1), None) is None:
                return at, (f"'{shown}' without a matching '#define': a macro of spec "
                            "text ends with it")
    if opened:
        at, shown = opened[-1]
        return at, f"'{shown}' is not closed"
    if defined:
        name, (at, shown) = min(defined.items(), key=lambda d: d[1][0])
        return at, (f"'{shown}' is not undone: a macro of spec text ends with it "
                    f"(#undef {name} at its end)")
    return None


def _comments(text):
    """The comments of C text, outside literals, in order: ("//", at) or
    ("/*", at, end), where end is the offset after its */ or None if it is
    left open. A literal ends at its quote or at the end of its line."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            yield "//", i
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            yield "/*", i, None if j < 0 else j + 2
            i = n if j < 0 else j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        else:
            i += 1


def line_comment(text):
    """The offset of the first // comment of C text (outside literals and
    /* */ comments), or None."""
    return next((c[1] for c in _comments(text) if c[0] == "//"), None)


def open_comment(text):
    """The offset of a /* comment that C text leaves open, or None: pasted
    into a generated function, it would take the generated code after the
    snippet into the comment, and the compiler would blame lines the spec
    does not have."""
    return next((c[1] for c in _comments(text) if c[0] == "/*" and c[2] is None), None)


def fits_one_line(text):
    """Whether C text can share a generated line with the code around it:
    one line, with no // comment, no comment or literal left open and no
    preprocessor directive, any of which would take the code that follows
    it on its line (or be broken by it)."""
    t = text.strip()
    if "\n" in t:
        return False
    i, n = 0, len(t)
    while i < n:
        c = t[i]
        if t.startswith(("//", "%:"), i) or c == "#":
            return False
        if t.startswith("/*", i):
            j = t.find("*/", i + 2)
            if j < 0:
                return False
            i = j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and t[j] != c:
                j += 2 if t[j] == "\\" else 1
            if j >= n:
                return False
            i = j + 1
        else:
            i += 1
    return True

def strip_c(text):
    """Blanks out comments and string/char literals, keeping every offset."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
        else:
            i += 1
            continue
        for k in range(i, j):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


JUMP = re.compile(r"(GOTO|YIELD|RETURN|DONE)\s*\(.*\)\s*;?\s*\Z|"
                  r"(abort|exit|_exit|pd__fell_through)\s*\(.*\)\s*;?\s*\Z", re.S)
KEYWORD = re.compile(r"(if|else|for|while|do|switch)\b")


class _Unknown(Exception):
    """C the fall-through check does not follow: it then says nothing."""


class TooDeep(Exception):
    """Code nested deeper than MAX_NESTING: offset is the statement's."""

    def __init__(self, offset):
        super().__init__(offset)
        self.offset = offset


def _match(text, i, open_, close):
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if depth == 0:
                return j
    raise _Unknown()


def _statement(text, i, depth, base):
    """One statement from i: (whether it surely jumps away, where it ends).

    depth is how many blocks and if/else bodies hold it; base is the offset
    of text in the snippet, for the position of a TooDeep.
    """
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        raise _Unknown()
    if depth > MAX_NESTING:
        raise TooDeep(base + i)
    if text[i] == "{":
        j = _match(text, i, "{", "}")
        return _ends(text[i + 1:j], depth + 1, base + i + 1), j + 1
    m = KEYWORD.match(text, i)
    if m and m.group(1) == "if":
        # An else-if chain is followed in this loop, as one level: however
        # long, it neither nests deeper nor recurses.
        jumps = True
        while True:
            k = text.find("(", m.end())
            j = _match(text, k, "(", ")")
            then, i = _body(text, j + 1, depth, base)
            jumps = jumps and then
            rest = text[i:].lstrip()
            if not rest.startswith("else") or re.match(r"else\w", rest):
                return False, i
            i = len(text) - len(rest) + 4
            m = KEYWORD.match(text, len(text) - len(text[i:].lstrip()))
            if not (m and m.group(1) == "if"):
                other, i = _body(text, i, depth, base)
                return jumps and other, i
    if m:
        raise _Unknown()    # loops and switches: not followed
    brackets = 0
    for j in range(i, len(text)):
        c = text[j]
        if c in "([{":
            brackets += 1
        elif c in ")]}":
            brackets -= 1
        elif c == ";" and brackets == 0:
            return bool(JUMP.match(text[i:j + 1].strip())), j + 1
    return bool(JUMP.match(text[i:].strip())), len(text)


def _body(text, i, depth, base):
    """The body of an if or an else: one level deeper, a block counting once."""
    block = text[i:].lstrip().startswith("{")
    return _statement(text, i, depth if block else depth + 1, base)


def _ends(text, depth=0, base=0):
    """Whether C statements surely end in a jump (GOTO, RETURN, ...)."""
    i, last = 0, False
    while text[i:].strip():
        last, i = _statement(text, i, depth, base)
    return last


def fall_through(text):
    """'certain' if code has no jump at all, 'maybe' if a path may fall off
    its end, None if every path jumps (or the code is beyond this check).
    Raises TooDeep for code nested more than MAX_NESTING levels."""
    clean = undigraph(strip_c(text))
    if "#" in clean or "%:" in clean:
        return None
    if not re.search(r"\b(GOTO|YIELD|RETURN|DONE|abort|exit|_exit)\s*\(", clean):
        return "certain"
    try:
        return None if _ends(clean) else "maybe"
    except (_Unknown, IndexError):
        return None


def call_arg_count(text, at):
    """The number of arguments of a call, from `at`, just after its first
    argument, to its closing parenthesis (commas inside brackets do not
    count; the text has no comments or literals left)."""
    depth, n = 0, 1
    for c in text[at:]:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif c == "," and depth == 0:
            n += 1
    return n
