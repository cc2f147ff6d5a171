"""Validation: a loaded node tree to a checked Spec, or diagnostics.

Every error names the node it is about, so that the message reads
FILE:LINE:COL: error: ... at the offending key or value. Validation goes on
after an error where it can, so that one run reports as much as possible.
"""
import difflib
import re

from gen import probe
from gen.errors import SpecError
from gen.ops import OPS

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MACRO = re.compile(r"\b(GOTO|YIELD|RETURN|DONE|START|KEEP|STOP)\b\s*(\()?")
# Macros over an array of child futures: their first argument names it.
ARRAY_MACRO = re.compile(r"\b(START|IDLE|ACTIVE|OUTPUT|COMPLETED|COUNT)\s*\(\s*"
                         r"([A-Za-z_][A-Za-z0-9_]*)?")
MAX_COUNT = 4096
SELF_MEMBER = re.compile(r"\bself\s*->\s*([A-Za-z_][A-Za-z0-9_]*)")
MACRO_ARG = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)")

C_KEYWORDS = frozenset("""
    auto break case char const continue default do double else enum extern
    float for goto if inline int long register restrict return short signed
    sizeof static struct switch typedef union unsigned void volatile while
    _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn
    _Static_assert _Thread_local asm typeof __asm__ __typeof__ __attribute__
    bool true false NULL
""".split())

# Names the generated code uses inside snippets; a member may not take them
# where they would be shadowed or shadow. A param may be called res, out or
# cqe_flags (it is reached as self->NAME in snippets), but not self or cx:
# F_init's field initialisers see self, and the generated functions' own
# parameters are named self and cx.
SNIPPET_NAMES = frozenset(["self", "cx", "res", "out", "cqe_flags"])
PARAM_RESERVED = frozenset(["self", "cx"])

# File names are NAME.h and NAME.c, and every generated name starts with
# NAME: a bound keeps them usable (and --check agreeing with the real run).
MAX_IDENT = 64

# The state member is 16 bits; far fewer states than that keep generation
# and compilation fast.
MAX_STATES = 4096

# What generated code declares at file scope for future F, besides F_S_STATE
# for each state (keep in step with templates/future.*.j2).
GLOBAL_SUFFIXES = ["", "_out", "_state", "_init", "_poll", "_poll_drop", "_drop",
                   "_state_name", "_vtable", "_dyn", "_spawn", "_spawn_on", "_block_on",
                   "__drop_code", "__teardown", "__quiesce", "__quiesce_sync",
                   "__quiesce_arrays",
                   "__vt_poll", "__vt_poll_drop", "__vt_drop", "__naive"]

TOP_KEYS = ["future", "doc", "include", "output", "params", "fields", "states",
            "teardown", "drop", "send"]
STATE_KEYS = ["doc", "do", "io", "args", "await", "join", "select", "then",
              "when", "next", "locals", "timeout_ms", "multishot"]
ACTIONS = ["do", "io", "await", "join", "select"]
BRANCH_KEYS = ["io", "args", "await", "then", "timeout_ms", "multishot"]
VAR_KEYS = ["name", "type", "init", "future", "count"]
MAX_BRANCHES = 32

# Runtime types bound to one thread, which a send future's params cannot
# carry to another (pd_runtime is not among them: the cross-runtime calls
# take one from any thread).
BOUND_TYPE = re.compile(r"\b(pd_task|pd_cx|pd_dyn|pd_drop_async|pd_bufgroup|pd_buf)\b")
BOUND_WHY = {
    "pd_task": "a task belongs to its runtime's thread (its references and state "
               "are not atomic)",
    "pd_cx": "a context is valid only during the poll that received it",
    "pd_dyn": "a pd_dyn points at a future driven by the caller's thread",
    "pd_drop_async": "a pd_drop_async drives a future of the caller's thread",
    "pd_bufgroup": "a buffer group is registered with one runtime's ring",
    "pd_buf": "a provided buffer belongs to one runtime's ring",
}


def did_you_mean(word, choices):
    """' (did you mean 'x'?)' for the choice closest to a misspelt word, or ''."""
    found = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean '{found[0]}'?)" if found else ""


class Snippet:
    """C text from a spec, with where it came from (for #line)."""

    def __init__(self, node):
        self.node = node
        self.text = node.value

    @property
    def file(self):
        return self.node.pos.file

    @property
    def line(self):
        return self.node.line_of_text()


class Var:
    """A param, field or local: a C object, or an inline child future."""

    def __init__(self, name, pos, ctype=None, array="", child=None, init=None):
        self.name = name
        self.pos = pos
        self.ctype = ctype
        self.array = array
        self.child = child          # the child's future name, or None
        self.child_spec = None      # resolved Spec of the child
        self.init = init
        self.where = None           # Snippet of the type (or future) node, for #line
        self.count = None           # an array of child futures: how many


class Branch:
    """One operation of a state: an io op or an awaited child."""

    def __init__(self, name, kind, pos):
        self.name = name            # None for plain io/await states
        self.kind = kind            # "io" or "await"
        self.pos = pos
        self.op = None              # Op, for io
        self.args = {}              # io: arg name -> Snippet
        self.args_node = None
        self.child = None           # Var, for await
        self.child_args = []        # await: [Snippet]
        self.timeout = None         # Snippet for timeout_ms
        self.then = None            # select branches only
        self.multishot = False      # io: the request stays armed
        self.group = None           # io: Snippet naming a pd_bufgroup *


class State:
    def __init__(self, name, phase, pos):
        self.name = name
        self.phase = phase          # "run" or "teardown"
        self.pos = pos
        self.doc = None
        self.kind = None            # "do", "io", "await", "join" or "select"
        self.code = None            # do code, or the state's then
        self.when = None
        self.next = None
        self.next_node = None
        self.locals = []
        self.branches = []
        self.deadline = None        # Snippet: timeout_ms over a whole await/join/select
        self.array_node = None      # join/select: the node naming an array
        self.array = None           # Var: the array of child futures this state waits on


class Spec:
    def __init__(self, file, root):
        self.file = file
        self.root = root
        self.name = None
        self.name_pos = root.pos
        self.doc = ""
        self.includes = []
        self.include_where = []     # Snippet of each include, for #line
        self.output = "int"
        self.output_where = None    # Snippet of output:, for #line
        self.params = []
        self.fields = []
        self.states = []            # run states, in order
        self.teardown = []          # teardown states, in order
        self.drop = None
        self.has_teardown = False
        self.starts = []            # (pos, array Var, argument count) of each START
        self.send = False           # send: true, F_spawn_on is generated

    def all_states(self):
        return self.states + self.teardown

    def members(self):
        yield from self.params
        yield from self.fields
        for s in self.all_states():
            yield from s.locals


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


def unbalanced(text):
    """(offset, message) of the first bracket of C text that has no partner,
    or None. Spec text is pasted into generated functions: a stray brace
    would close one, and the compiler would blame the generated code."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for i, c in enumerate(strip_c(text)):
        if c in "([{":
            stack.append((i, c))
        elif c in pairs:
            if not stack or stack[-1][1] != pairs[c]:
                return i, f"'{c}' without a matching '{pairs[c]}'"
            stack.pop()
    if stack:
        i, c = stack[-1]
        return i, f"'{c}' is not closed"
    return None


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


class Validator:
    def __init__(self, diags):
        self.d = diags

    # --- small checks ---

    def err(self, pos, msg):
        self.d.error(pos, msg)

    def expect(self, node, kind, what):
        if node.kind != kind:
            want = {"scalar": "a scalar", "seq": "a list", "map": "a mapping"}[kind]
            self.err(node.pos, f"{what} must be {want}, not {node.describe()}")
            return False
        return True

    def keys(self, node, allowed, what):
        for key in node.value:
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                self.err(node.key_pos[key], f"unknown key '{key}' in {what}" + (hint or
                         f" (expected one of: {', '.join(allowed)})"))

    def ident(self, node, what):
        """Checks a scalar is a usable C identifier; returns it or None."""
        if not self.expect(node, "scalar", what):
            return None
        return node.value if self.name_ok(node.value, node.pos, what) else None

    def name_ok(self, name, pos, what):
        """Checks a spec-given name can be a C identifier of generated code."""
        if not IDENT.match(name):
            self.err(pos, f"{what} '{name}' is not a C identifier")
            return False
        if len(name) > MAX_IDENT:
            self.err(pos, f"{what} '{name[:16]}...' is longer than {MAX_IDENT} characters")
            return False
        if name in C_KEYWORDS:
            self.err(pos, f"{what} '{name}' is a C keyword")
            return False
        if name.lower().startswith("pd_"):
            self.err(pos, f"{what} '{name}': names starting with pd_ are reserved")
            return False
        return True

    def text(self, node, what, allow_empty=False):
        if not self.expect(node, "scalar", what):
            return None
        if node.comment:
            pos, dropped = node.comment
            shown = dropped if len(dropped) <= 40 else dropped[:37] + "..."
            self.d.warning(pos, f"'{shown}' after {what} is a YAML comment and is not "
                           "part of the C text; quote the value or use a block scalar (|) "
                           "if it belongs to it")
        if not allow_empty and not node.value.strip():
            self.err(node.pos, f"{what} must not be empty")
            return None
        if node.value.rstrip().endswith("\\"):
            self.err(node.pos_at(len(node.value.rstrip()) - 1),
                     f"{what} ends with a backslash: the line continuation would join "
                     "the generated code that follows")
            return None
        bad = unbalanced(node.value)
        if bad is not None:
            offset, message = bad
            self.err(node.pos_at(offset), f"{message} in {what}")
            return None
        return Snippet(node)

    # --- the spec ---

    def spec(self, file, root):
        s = Spec(file, root)
        m = root.value
        self.keys(root, TOP_KEYS, "the spec")
        if "future" not in m:
            self.err(root.pos, "missing required key 'future'")
        else:
            s.name = self.ident(m["future"], "future name")
            s.name_pos = m["future"].pos
        if "doc" in m and self.expect(m["doc"], "scalar", "doc"):
            s.doc = m["doc"].value.strip()
        if "include" in m:
            self.includes(s, m["include"])
        if "output" in m:
            out = self.text(m["output"], "output")
            if out:
                s.output = out.text.strip()
                s.output_where = out
        if "send" in m and self.expect(m["send"], "scalar", "send"):
            v = m["send"].value.strip().lower()
            if v in ("true", "yes", "false", "no"):
                s.send = v in ("true", "yes")
            else:
                self.err(m["send"].pos, f"send must be true or false, not '{m['send'].value}'")
        if "params" in m:
            s.params = self.vars(m["params"], "param", allow_child=False,
                                 allow_init=False, allow_array=False)
            if s.send:
                self.send_params(s)
        if "fields" in m:
            s.fields = self.vars(m["fields"], "field")
        if "states" not in m:
            self.err(root.pos, "missing required key 'states'")
        else:
            s.states = self.states(m["states"], "run", "states")
        if "teardown" in m:
            s.has_teardown = True
            s.teardown = self.states(m["teardown"], "teardown", "teardown")
            if "drop" not in m:
                self.err(root.key_pos["teardown"], "a future with teardown must say "
                         "what its sync drop does: add 'drop:' (use drop: \"\" for nothing)")
        if "drop" in m:
            s.drop = self.text(m["drop"], "drop", allow_empty=True)
            if s.drop:
                self.macros(s, s.drop, None)
        n = len(s.all_states())
        if n > MAX_STATES:
            self.err(root.key_pos["states"], f"{n} states: a future has at most "
                     f"{MAX_STATES} (run and teardown together)")
        self.unique_names(s)
        self.params_vs_api(s)
        self.state_refs(s)
        return s

    def send_params(self, s):
        """A send future is initialised on one thread and run on another:
        its params cross threads, so none may be bound to the caller's."""
        for v in s.params:
            m = BOUND_TYPE.search(v.ctype or "")
            if m:
                self.err(v.pos, f"param '{v.name}' of a send future has type "
                         f"'{v.ctype}': {BOUND_WHY[m.group(1)]}, and a send future "
                         "runs on the target runtime's thread")

    def params_vs_api(self, s):
        """A param is in scope in F_init, F_spawn and F_block_on, whose
        signatures and bodies use the future's own generated names."""
        if s.name is None:
            return
        api = set(global_names(s))
        for v in s.params:
            if v.name in api:
                self.err(v.pos, f"param name '{v.name}' is a name the generated code "
                         f"declares for future '{s.name}'")

    def includes(self, s, node):
        if not self.expect(node, "seq", "include"):
            return
        for item in node.value:
            if not self.expect(item, "scalar", "an include"):
                continue
            v = item.value.strip()
            if re.match(r'^(<[^<>"\s]+>|"[^"\s]+")$', v):
                s.includes.append(v)
                s.include_where.append(Snippet(item))
            else:
                self.err(item.pos, f"include '{v}' must be written <header.h> "
                         "or \"header.h\"")

    def vars(self, node, what, allow_child=True, allow_init=True, allow_array=True):
        out = []
        if not self.expect(node, "seq", f"{what}s"):
            return out
        for item in node.value:
            if not self.expect(item, "map", f"a {what}"):
                continue
            v = self.var(item, what, allow_child, allow_init, allow_array)
            if v:
                out.append(v)
        return out

    def var(self, node, what, allow_child, allow_init, allow_array):
        m = node.value
        allowed = [k for k in VAR_KEYS if (k != "future" or allow_child)
                   and (k != "init" or allow_init)
                   and (k != "count" or (allow_child and what == "field"))]
        self.keys(node, allowed, f"a {what}")
        if "name" not in m:
            self.err(node.pos, f"{what} is missing required key 'name'")
            return None
        name = self.ident(m["name"], f"{what} name")
        if name is None:
            return None
        pos = m["name"].pos
        if name in (PARAM_RESERVED if what == "param" else SNIPPET_NAMES):
            self.err(pos, f"{what} name '{name}' is reserved: generated code and "
                     "snippets use it")
            return None
        if "future" in m and allow_child:
            if "type" in m:
                self.err(node.key_pos["type"], f"{what} '{name}' has both 'type' and "
                         "'future': a child future's type is its spec")
            if "init" in m:
                self.err(node.key_pos["init"], f"child future '{name}' cannot have "
                         "init: it is initialised by await")
            if m["future"].kind == "scalar" and m["future"].value in BUILTIN_CHILDREN:
                child = m["future"].value
            else:
                child = self.ident(m["future"], "child future type")
            v = Var(name, pos, child=child)
            v.child_pos = m["future"].pos
            v.where = Snippet(m["future"])
            if "count" in m and what == "field":
                v.count = self.count(m["count"], name)
                if v.count is None:
                    return None
            return v
        if "count" in m and "count" in allowed:
            self.err(node.key_pos["count"], f"{what} '{name}': count makes an array of "
                     "child futures and goes with future: (a C array is type: \"T[N]\")")
        if "type" not in m:
            self.err(node.pos, f"{what} '{name}' is missing required key 'type'")
            return None
        t = self.text(m["type"], f"type of '{name}'")
        if t is None:
            return None
        ctype, array = split_array(t.text.strip())
        if array:
            if not allow_array:
                self.err(m["type"].pos, f"{what} '{name}' cannot be an array: "
                         "C passes arrays as pointers")
                return None
        if not ctype:
            self.err(m["type"].pos, f"type of '{name}' is empty")
            return None
        if ctype == "pd_buf" and (what != "field" or array or "init" in m):
            why = ("it starts empty and takes no init" if "init" in m and what == "field"
                   and not array else "one pd_buf field per buffer held" if array
                   else "a field is released on every destruction path")
            self.err(m["type"].pos, f"{what} '{name}': a pd_buf must be a plain field "
                     f"({why})")
            return None
        init = None
        if "init" in m:
            init = self.text(m["init"], f"init of '{name}'")
            if init and array:
                self.err(m["init"].pos, f"array '{name}' cannot have init: "
                         "assign its elements in code")
                init = None
            if init:
                self.no_macros(init, f"init of '{name}'")
        v = Var(name, pos, ctype=ctype, array=array, init=init)
        v.where = t
        return v

    def count(self, node, name):
        if not self.expect(node, "scalar", f"count of '{name}'"):
            return None
        v = node.value.strip()
        if not re.fullmatch(r"[0-9]+", v) or not 1 <= int(v) <= MAX_COUNT:
            self.err(node.pos, f"count of '{name}' must be a whole number from 1 to "
                     f"{MAX_COUNT}, not '{v}'")
            return None
        return int(v)

    # --- states ---

    def states(self, node, phase, what):
        out = []
        if not self.expect(node, "map", what):
            return out
        if not node.value:
            self.err(node.pos, f"{what} must have at least one state")
        for name, snode in node.value.items():
            npos = node.key_pos[name]
            if not self.name_ok(name, npos, "state name"):
                continue
            st = State(name, phase, npos)
            if self.expect(snode, "map", f"state '{name}'"):
                self.state(st, snode)
            out.append(st)
        return out

    def state(self, st, node):
        m = node.value
        self.keys(node, STATE_KEYS, f"state '{st.name}'")
        actions = [a for a in ACTIONS if a in m]
        if not actions:
            self.err(st.pos, f"state '{st.name}' has no action: give it one of "
                     "do, io, await, join, select")
            return
        if len(actions) > 1:
            self.err(node.key_pos[actions[1]], f"state '{st.name}' has more than one "
                     f"action ({', '.join(actions)}); a state does exactly one thing")
            return
        st.kind = actions[0]
        if "doc" in m and self.expect(m["doc"], "scalar", "doc"):
            st.doc = m["doc"].value.strip()
        if "locals" in m:
            st.locals = self.vars(m["locals"], "local")
        if "when" in m:
            st.when = self.text(m["when"], "when")
            if st.when:
                self.no_macros(st.when, "when")
        if "next" in m:
            st.next_node = m["next"]
            if self.expect(m["next"], "scalar", "next"):
                st.next = m["next"].value
        if st.kind == "do":
            for k in ("then", "args", "timeout_ms", "multishot"):
                if k in m:
                    self.err(node.key_pos[k], f"'{k}' does not go with 'do' "
                             "(a do state's code is its do)")
            st.code = self.text(m["do"], "do")
        elif st.kind in ("io", "await"):
            if st.kind == "await" and "timeout_ms" in m:
                st.deadline = self.deadline(m["timeout_ms"])
            st.branches = [self.branch(None, st.kind, node, st)]
            if "then" in m:
                st.code = self.text(m["then"], "then")
        else:
            for k in ("args", "multishot"):
                if k in m:
                    self.err(node.key_pos[k], f"'{k}' belongs in each {st.kind} branch")
            if "timeout_ms" in m:
                st.deadline = self.deadline(m["timeout_ms"])
            if st.kind == "select" and "then" in m and "timeout_ms" not in m \
                    and m[st.kind].kind != "scalar":
                self.err(node.key_pos["then"], "a select has no state-level then: "
                         "give each branch its own then (with timeout_ms, the "
                         "state's then runs when the deadline fires)")
            elif st.kind == "select" and "then" not in m and "timeout_ms" in m \
                    and m[st.kind].kind != "scalar":
                self.err(node.key_pos["timeout_ms"], "a select with timeout_ms needs a "
                         "state-level then: it runs when the deadline fires")
            if m[st.kind].kind == "scalar":
                # join/select over an array of child futures (resolved later).
                st.array_node = m[st.kind]
                if "then" in m:
                    st.code = self.text(m["then"], "then")
                elif st.kind == "select":
                    self.err(st.pos, f"select over an array needs a then: it sees "
                             "index and out of the member that finished first")
                return self.state_end(st, m)
            if "then" in m and (st.kind == "join" or "timeout_ms" in m):
                st.code = self.text(m["then"], "then")
            st.branches = self.branches(m[st.kind], st)
        self.state_end(st, m)

    def state_end(self, st, m):
        if st.phase == "run" and st.when and not st.next:
            self.err(m["when"].pos, f"run state '{st.name}' has 'when' but no 'next': "
                     "where does control go when the guard is false?")
        multi = st.kind == "io" and st.branches and st.branches[0].multishot
        if multi and st.code is None:
            self.err(st.pos, f"multishot state '{st.name}' needs a then: it runs once "
                     "per completion")
        elif st.phase == "run" and not st.next and st.kind != "select" and st.code is None \
                and st.kind in ("io", "await", "join"):
            self.err(st.pos, f"run state '{st.name}' has no then and no next: "
                     "it would fall through")
        self.buffer_rules(st)

    def buffer_rules(self, st):
        """Where multishot requests and provided buffers may go."""
        for b in st.branches:
            if b.multishot and st.phase == "teardown":
                self.err(b.multishot_pos, "multishot is for run states: a teardown "
                         "state finishes, it does not serve")
            elif b.multishot and st.kind == "join":
                self.err(b.multishot_pos, "multishot does not go in a join: a join "
                         "waits for one completion of each branch")
            if b.group is not None and st.kind == "join":
                self.err(b.group.node.pos, "a recv with group goes in an io state or a "
                         "select branch: a join's then has no buf")

    def deadline(self, node):
        """timeout_ms on a whole await, join or select: one deadline for all."""
        t = self.text(node, "timeout_ms")
        if t:
            self.no_macros(t, "timeout_ms")
        return t

    def branches(self, node, st):
        out = []
        if not self.expect(node, "map", st.kind):
            return out
        if not node.value:
            self.err(node.pos, f"{st.kind} must have at least one branch")
        if len(node.value) > MAX_BRANCHES:
            self.err(node.pos, f"{st.kind} has more than {MAX_BRANCHES} branches")
        for name, bnode in node.value.items():
            kpos = node.key_pos[name]
            if not self.name_ok(name, kpos, "branch name"):
                continue
            if name in SNIPPET_NAMES or name == "timed_out":
                self.err(kpos, f"branch name '{name}' is reserved for generated code")
                continue
            if not self.expect(bnode, "map", f"branch '{name}'"):
                continue
            self.keys(bnode, BRANCH_KEYS, f"branch '{name}'")
            kinds = [k for k in ("io", "await") if k in bnode.value]
            if len(kinds) != 1:
                self.err(kpos, f"branch '{name}' must have exactly one of io, await")
                continue
            b = self.branch(name, kinds[0], bnode, st)
            b.pos = kpos
            if st.kind == "select":
                if "then" not in bnode.value:
                    self.err(kpos, f"select branch '{name}' is missing required key 'then'")
                else:
                    b.then = self.text(bnode.value["then"], "then")
            elif "then" in bnode.value:
                self.err(bnode.key_pos["then"], f"join branch '{name}' has no then of its "
                         "own: the state's then sees every branch")
            out.append(b)
        return out

    def branch(self, name, kind, node, st):
        m = node.value
        b = Branch(name, kind, node.key_pos.get(kind, node.pos))
        if kind == "io":
            opnode = m["io"]
            if not self.expect(opnode, "scalar", "io"):
                return b
            op = OPS.get(opnode.value)
            if op is None:
                hint = did_you_mean(opnode.value, OPS)
                self.err(opnode.pos, f"unknown io op '{opnode.value}'" + (hint or
                         f" (known: {', '.join(sorted(OPS))})"))
                return b
            b.op = op
            self.io_args(b, m.get("args"), node)
            if "timeout_ms" in m:
                b.timeout = self.text(m["timeout_ms"], "timeout_ms")
                if b.timeout:
                    self.no_macros(b.timeout, "timeout_ms")
            if "multishot" in m:
                self.multishot(b, m["multishot"], node.key_pos["multishot"])
        else:
            if "multishot" in m:
                self.err(node.key_pos["multishot"], "multishot goes with io, not await")
            if "timeout_ms" in m and name is not None:
                self.err(node.key_pos["timeout_ms"], f"timeout_ms goes on the whole "
                         f"{st.kind}, not on its await branch '{name}'")
            cnode = m["await"]
            if self.expect(cnode, "scalar", "await"):
                b.child = cnode          # resolved to a Var in state_refs
            args = m.get("args")
            if args is not None:
                if self.expect(args, "seq", "await args"):
                    for a in args.value:
                        t = self.text(a, "an argument")
                        if t:
                            self.no_macros(t, "an argument")
                            b.child_args.append(t)
                b.args_node = args
        return b

    def multishot(self, b, node, kpos):
        if not self.expect(node, "scalar", "multishot"):
            return
        if node.value in ("true", "yes"):
            b.multishot = True
        elif node.value not in ("false", "no"):
            self.err(node.pos, f"multishot must be true or false, not '{node.value}'")
            return
        b.multishot_pos = kpos
        if b.multishot and not b.op.multishot:
            known = ", ".join(sorted(o.name for o in OPS.values() if o.multishot))
            self.err(kpos, f"io '{b.op.name}' has no multishot form (multishot ops: {known})")
            b.multishot = False
        elif b.multishot and b.timeout is not None:
            self.err(kpos, "timeout_ms does not go with multishot: a linked timeout "
                     "would end the whole request, not one wait")
        elif b.multishot and b.op.group and b.group is None:
            self.err(kpos, f"a multishot {b.op.name} needs group: the kernel picks a "
                     "buffer for each completion")
        elif b.multishot:
            for key in b.args:
                if key not in b.op.ms_args:
                    self.err(b.args_node.key_pos[key], f"a multishot {b.op.name} takes "
                             f"no '{key}' (it takes {', '.join(b.op.ms_args)}): one "
                             "request serves every completion" +
                             (f"; {b.op.ms_note}" if b.op.ms_note else ""))

    @staticmethod
    def wants_multishot(node):
        """Whether the state or branch node says `multishot: true`."""
        ms = node.value.get("multishot")
        return ms is not None and ms.kind == "scalar" and ms.value in ("true", "yes")

    def io_args(self, b, node, owner):
        op = b.op
        given = {}
        if node is not None:
            if not self.expect(node, "map", "args"):
                return
            for key, val in node.value.items():
                if key not in op.arg_names():
                    known = ", ".join(op.arg_names()) or "none"
                    hint = did_you_mean(key, op.arg_names())
                    self.err(node.key_pos[key], f"unknown argument '{key}' for io "
                             f"'{op.name}'" + (hint or f" (arguments: {known})"))
                    continue
                t = self.text(val, f"argument '{key}'")
                if t:
                    self.no_macros(t, f"argument '{key}'")
                    given[key] = t
        where = node.pos if node is not None else owner.pos
        if op.name == "timeout":
            if ("ms" in given) == ("ns" in given):
                self.err(where, "io 'timeout' needs exactly one of the arguments ms, ns")
        elif "group" in given:
            both = [a for a in ("buf", "len") if a in given]
            if both:
                self.err(node.key_pos[both[0]], f"io '{op.name}' takes either group or "
                         "buf and len: with group, the kernel picks the buffer")
            b.group = given.pop("group")
        elif not (op.group and self.wants_multishot(owner)):
            # (A multishot recv without group is told that it needs group.)
            missing = [a for a, default in op.args if default is None and a not in given]
            for arg in missing:
                alt = " (or give group: a pd_bufgroup *, for a buffer the kernel " \
                    "picks)" if op.group and arg in ("buf", "len") else ""
                self.err(where, f"io '{op.name}' is missing required argument '{arg}'"
                         + alt)
        b.args = given
        b.args_node = node

    # --- names and references ---

    def unique_names(self, s):
        seen = {}
        kinds = [("param", v) for v in s.params] + [("field", v) for v in s.fields]
        for st in s.all_states():
            kinds += [("local", v) for v in st.locals]
        for kind, v in kinds:
            if v.name not in seen:
                seen[v.name] = (kind, v.pos)
                continue
            first_kind, first = seen[v.name]
            if kind == "local" and first_kind != "local":
                self.err(v.pos, f"local '{v.name}' shadows the {first_kind} declared at "
                         f"line {first.line}; locals are reached as self->NAME too")
            else:
                self.err(v.pos, f"duplicate name '{v.name}' (first declared at line "
                         f"{first.line}); params, fields and locals share one namespace")
        states = {}
        for st in s.all_states():
            if st.name in states:
                self.err(st.pos, f"duplicate state name '{st.name}' (first declared at "
                         f"line {states[st.name].line})")
            else:
                states[st.name] = st.pos

    def no_macros(self, snip, what):
        for m in MACRO.finditer(strip_c(snip.text)):
            self.err(snip.node.pos_at(m.start()), f"{m.group(1)} is not allowed in {what}")

    def macros(self, s, snip, st, branch=None):
        """Checks GOTO/YIELD/RETURN/DONE/KEEP in one snippet; returns GOTO targets.

        branch is the io branch whose then this snippet is, if any.
        """
        targets = []
        clean = strip_c(snip.text)
        run, down = self.state_names(s)
        for m in MACRO.finditer(clean):
            macro, pos = m.group(1), snip.node.pos_at(m.start())
            if st is None:
                self.err(pos, f"{macro} is not allowed in drop code: drop is synchronous")
                continue
            if not m.group(2):
                self.err(pos, f"{macro} must be called: {macro}(...)")
                continue
            if macro == "KEEP":
                self.keep(s, snip, clean, m, pos, branch)
            elif macro == "STOP" and (branch is None or not branch.multishot
                                      or st.kind != "io"):
                self.err(pos, "STOP is only allowed in the then of a multishot io state: "
                         "it ends that state's request")
            elif macro == "YIELD" and branch is not None and branch.multishot:
                self.err(pos, "YIELD is not allowed in a multishot then: fall off the "
                         "end to wait for the next completion, or GOTO another state")
            elif macro == "START" and st.phase == "teardown":
                self.err(pos, "START is only allowed in run states: teardown cannot "
                         "start new work")
            elif macro == "RETURN" and st.phase == "teardown":
                self.err(pos, "RETURN is not allowed in teardown: teardown has no "
                         "output (use DONE() to finish it)")
            elif macro == "DONE" and st.phase == "run":
                self.err(pos, "DONE is only allowed in teardown (use RETURN(value) "
                         "to complete a run state)")
            elif macro in ("GOTO", "YIELD"):
                am = MACRO_ARG.match(clean, m.end())
                if not am:
                    self.err(pos, f"{macro} takes a state name")
                    continue
                target = am.group(1)
                tpos = snip.node.pos_at(am.start(1))
                same, other = (run, down) if st.phase == "run" else (down, run)
                if target in same:
                    targets.append(target)
                elif target in other:
                    self.err(tpos, f"{macro}({target}): '{target}' is a "
                             f"{'teardown' if st.phase == 'run' else 'run'} state; "
                             f"{macro} stays within its phase")
                else:
                    self.err(tpos, f"{macro}({target}): no state named '{target}'"
                             + did_you_mean(target, same))
        return targets

    def state_names(self, s):
        """The names of s's run states and of its teardown states. Computed
        once per spec: macros() asks for them at every snippet, and a spec
        may have thousands of states."""
        if getattr(self, "_names_of", None) is not s:
            self._names_of = s
            self._names = ({x.name for x in s.states}, {x.name for x in s.teardown})
        return self._names

    def keep(self, s, snip, clean, m, pos, branch):
        if branch is None or branch.group is None:
            self.err(pos, "KEEP is only allowed in the then of a recv with group: "
                     "it moves that then's buf")
            return
        am = MACRO_ARG.match(clean, m.end())
        if not am:
            self.err(pos, "KEEP takes a pd_buf field")
            return
        field = next((v for v in s.fields if v.name == am.group(1)), None)
        if field is None or field.ctype != "pd_buf":
            self.err(snip.node.pos_at(am.start(1)), f"KEEP({am.group(1)}): "
                     f"'{am.group(1)}' is not a pd_buf field")

    def array_macros(self, s, snip):
        """START/IDLE/ACTIVE/OUTPUT/COMPLETED/COUNT name an array of children;
        START's arguments are counted for resolve_children."""
        clean = strip_c(snip.text)
        arrays = {v.name: v for v in s.fields if v.count}
        for m in ARRAY_MACRO.finditer(clean):
            macro, name = m.group(1), m.group(2)
            pos = snip.node.pos_at(m.start(2) if name else m.start())
            if name not in arrays:
                what = f"'{name}' is not" if name else "its first argument must name"
                self.err(pos, f"{macro}: {what} an array of child futures (a field with "
                         "future: and count:)")
                continue
            if macro == "START":
                s.starts.append((pos, arrays[name], _call_args(clean, m.end(2))))

    def foreign_locals(self, s):
        """Code may use only its own state's locals: the others share storage."""
        owner = {}
        for st in s.all_states():
            for v in st.locals:
                owner[v.name] = st
        if not owner:
            return
        for st in s.all_states():
            snippets = [st.code, st.when, st.deadline] + [v.init for v in st.locals]
            for b in st.branches:
                snippets += [b.then, b.timeout, b.group] + list(b.args.values()) \
                    + b.child_args
            for snip in snippets:
                if snip is None:
                    continue
                for m in SELF_MEMBER.finditer(strip_c(snip.text)):
                    other = owner.get(m.group(1))
                    if other is not None and other is not st:
                        self.err(snip.node.pos_at(m.start(1)),
                                 f"'{m.group(1)}' is a local of state '{other.name}'; "
                                 f"in state '{st.name}' its storage belongs to another "
                                 "state (make it a field to keep it across states)")

    def state_refs(self, s):
        self.foreign_locals(s)
        fields = {v.name: v for v in s.fields}
        for phase, states in (("run", s.states), ("teardown", s.teardown)):
            names = {x.name for x in states}
            edges = {}
            for st in states:
                targets = []
                io_then = st.branches[0] if st.kind == "io" and st.branches else None
                snips = [(st.code, io_then)] + [(b.then, b) for b in st.branches]
                for snip, owner in snips:
                    if snip is not None:
                        targets += self.macros(s, snip, st, owner)
                        self.array_macros(s, snip)
                self.array_state(s, st, fields)
                if st.next is not None:
                    if st.next in names:
                        targets.append(st.next)
                    else:
                        where = ("a run" if phase == "teardown" else "a teardown") \
                            if any(st.next == x.name for x in s.all_states()) else None
                        msg = (f"next: '{st.next}' is {where} state; next stays within "
                               "its phase") if where else f"next: no state named " \
                            f"'{st.next}'" + did_you_mean(st.next, names)
                        self.err(st.next_node.pos, msg)
                if phase == "run" and st.next is None:
                    self.falls(st)
                edges[st.name] = targets
                locals_ = {v.name: v for v in st.locals}
                used = set()
                for b in st.branches:
                    if b.kind != "await" or b.child is None:
                        continue
                    cnode, b.child = b.child, None
                    target = locals_.get(cnode.value) or fields.get(cnode.value)
                    if target is None:
                        other = any(cnode.value == v.name for v in s.members())
                        self.err(cnode.pos, f"await: '{cnode.value}' is "
                                 + ("a local of another state; await a field or a local "
                                    "of this state" if other else
                                    "not a field or local of this future"
                                    + did_you_mean(cnode.value,
                                                   [v.name for v in s.members() if v.child])))
                    elif target.child is None:
                        self.err(cnode.pos, f"await: '{cnode.value}' is not a child "
                                 "future (declare it with future: TYPE)")
                    elif target.name in used:
                        self.err(cnode.pos, f"await: child '{cnode.value}' is already "
                                 "used by another branch of this state")
                    else:
                        used.add(target.name)
                        b.child = target
                        b.child_node = cnode
            self.reachability(s, states, edges)

    def falls(self, st):
        """A run state's code that can fall off its end, with no next."""
        # A multishot then that falls off its end waits for the next
        # completion: that is how it serves, not a fall-through.
        multi = st.kind == "io" and st.branches and st.branches[0].multishot
        snippets = [st.code] if (st.kind != "select" or st.code is not None) \
            and not multi else []
        snippets += [b.then for b in st.branches if b.then is not None and not b.multishot]
        for snip in snippets:
            if snip is None:
                continue
            how = fall_through(snip.text)
            msg = (f"run state '{st.name}': this code can fall off its end without GOTO, "
                   "RETURN or YIELD, and the state has no next (it would abort at run "
                   "time)")
            if how == "certain":
                self.err(snip.node.pos, msg.replace("can fall", "falls"))
            elif how == "maybe":
                self.d.warning(snip.node.pos, msg)

    def array_state(self, s, st, fields):
        """A join, select or await over an array of child futures."""
        node = st.array_node
        if node is None and st.kind == "await" and st.branches \
                and st.branches[0].child is not None:
            cnode = st.branches[0].child
            target = fields.get(cnode.value)
            if target is not None and target.count:
                if st.branches[0].child_args or st.branches[0].args_node is not None:
                    self.err(st.branches[0].args_node.pos, f"await {cnode.value}: an "
                             "array's members are started with START(array, i, args...), "
                             "not by await")
                st.array, st.branches = target, []
            return
        if node is None:
            return
        target = fields.get(node.value)
        if target is None or not target.count:
            self.err(node.pos, f"{st.kind}: '{node.value}' is not an array of child "
                     "futures (a field with future: and count:); give a mapping of "
                     "branches to join or select them")
            return
        st.array = target

    def reachability(self, s, states, edges):
        if not states:
            return
        seen, todo = set(), [states[0].name]
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            todo.extend(edges.get(n, []))
        for st in states:
            if st.name not in seen:
                self.d.warning(st.pos, f"state '{st.name}' is unreachable")


def global_names(s):
    """The names generated code declares at file scope for Spec s."""
    yield from (s.name + suffix for suffix in GLOBAL_SUFFIXES)
    for st in s.all_states():
        yield f"{s.name}_S_{st.name}"
    for v in s.fields:
        if v.count:
            yield f"{s.name}__start_{v.name}"


def probe_names(specs, diags):
    """Asks the C compiler (gen.probe) which of the specs' names would break
    the generated C, and reports each at the spec; also reports two futures
    of one run whose generated names meet."""
    owner, members, includes = {}, {}, set()
    for s in specs.values():
        if s.name is None:
            continue
        for g in global_names(s):
            other = owner.setdefault(g, s)
            if other is not s:
                diags.error(s.name_pos, f"future '{s.name}': the generated name '{g}' "
                            f"is also generated for future '{other.name}'")
        kinds = [("param", v) for v in s.params] + [("field", v) for v in s.fields]
        for st in s.all_states():
            kinds += [("local", v) for v in st.locals]
            kinds += [("branch", b) for b in st.branches if b.name]
        for kind, thing in kinds:
            members.setdefault(thing.name, []).append((kind, thing.pos))
        includes.update(i for i in s.includes if i.startswith("<"))
    bad = probe.check(owner, members, includes)
    for name, why in sorted(bad.items()):
        s = owner.get(name)
        if s is not None and name == s.name:
            diags.error(s.name_pos, f"future name '{name}' is {why}; choose another name")
        elif s is not None:
            diags.error(s.name_pos, f"future '{s.name}': the generated name '{name}' is "
                        f"{why}; choose another future name")
        for kind, pos in members.get(name, []):
            diags.error(pos, f"{kind} name '{name}' is {why}; choose another name")


JUMP = re.compile(r"(GOTO|YIELD|RETURN|DONE)\s*\(.*\)\s*;?\s*\Z|"
                  r"(abort|exit|_exit|pd__fell_through)\s*\(.*\)\s*;?\s*\Z", re.S)
KEYWORD = re.compile(r"(if|else|for|while|do|switch)\b")


class _Unknown(Exception):
    """C the fall-through check does not follow: it then says nothing."""


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


def _statement(text, i):
    """One statement from i: (whether it surely jumps away, where it ends)."""
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        raise _Unknown()
    if text[i] == "{":
        j = _match(text, i, "{", "}")
        return _ends(text[i + 1:j]), j + 1
    m = KEYWORD.match(text, i)
    if m and m.group(1) == "if":
        k = text.find("(", m.end())
        j = _match(text, k, "(", ")")
        then, i = _statement(text, j + 1)
        rest = text[i:].lstrip()
        if rest.startswith("else") and not re.match(r"else\w", rest):
            other, i = _statement(text, len(text) - len(rest) + 4)
            return then and other, i
        return False, i
    if m:
        raise _Unknown()    # loops and switches: not followed
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == ";" and depth == 0:
            return bool(JUMP.match(text[i:j + 1].strip())), j + 1
    return bool(JUMP.match(text[i:].strip())), len(text)


def _ends(text):
    """Whether C statements surely end in a jump (GOTO, RETURN, ...)."""
    i, last = 0, False
    while text[i:].strip():
        last, i = _statement(text, i)
    return last


def fall_through(text):
    """'certain' if code has no jump at all, 'maybe' if a path may fall off
    its end, None if every path jumps (or the code is beyond this check)."""
    clean = strip_c(text)
    if "#" in clean:
        return None
    if not re.search(r"\b(GOTO|YIELD|RETURN|DONE|abort|exit|_exit)\s*\(", clean):
        return "certain"
    try:
        return None if _ends(clean) else "maybe"
    except (_Unknown, IndexError):
        return None


def _call_args(text, at):
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


class _Builtin:
    """A child future the runtime provides: polldrop.h declares it."""

    def __init__(self, name, params):
        self.name = name
        self.params = [Var(n, None, ctype=t) for n, t in params]


# pd_join: a join handle on a spawned task (polldrop.h).
BUILTIN_CHILDREN = {"pd_join": _Builtin("pd_join", [("task", "pd_task *"),
                                                    ("out", "void *")])}


def resolve_children(specs, diags):
    """Binds every child future to its Spec and checks await arguments.

    `specs` maps future name to Spec for every spec loaded together.
    """
    for s in specs.values():
        for v in s.members():
            if v.child is None:
                continue
            if v.child in BUILTIN_CHILDREN:
                v.child_spec = BUILTIN_CHILDREN[v.child]
            elif v.child not in specs:
                diags.error(v.child_pos, f"unknown child future type '{v.child}' "
                            f"(no spec named on the command line or found as "
                            f"{v.child}.yaml on the -I path)")
            else:
                v.child_spec = specs[v.child]
        for st in s.all_states():
            for b in st.branches:
                if b.kind != "await" or b.child is None or b.child.child_spec is None:
                    continue
                want = len(b.child.child_spec.params)
                got = len(b.child_args)
                if want != got:
                    where = b.args_node.pos if b.args_node is not None else b.child_node.pos
                    names = ", ".join(p.name for p in b.child.child_spec.params) or "none"
                    diags.error(where, f"await {b.child.name}: {b.child.child} takes "
                                f"{want} argument{'s' if want != 1 else ''} ({names}), "
                                f"got {got}")
        for pos, arr, nargs in s.starts:
            if arr.child_spec is None:
                continue
            want = len(arr.child_spec.params)
            if nargs != want + 2:
                names = ", ".join(p.name for p in arr.child_spec.params) or "none"
                diags.error(pos, f"START({arr.name}, i, ...): {arr.child} takes {want} "
                            f"argument{'s' if want != 1 else ''} ({names}), got "
                            f"{nargs - 2}")
    # A future that contains itself, directly or not, has no finite size.
    for s in specs.values():
        path = _cycle(s, specs)
        if path:
            first = next(v for v in s.members() if v.child == path[1])
            diags.error(first.child_pos, "child futures form a cycle: "
                        + " -> ".join(path) + " (a future cannot contain itself)")


def _cycle(s, specs):
    """The shortest path of child types from s back to s, or None.

    A breadth-first search that visits each spec once: a child embedded
    many times, at many levels, costs no more than once.
    """
    parent = {}
    todo = [s.name]
    while todo:
        nxt = []
        for name in todo:
            for v in specs[name].members():
                if v.child not in specs or v.child in parent:
                    continue
                parent[v.child] = name
                if v.child == s.name:
                    path = [s.name]
                    while path[-1] != s.name or len(path) == 1:
                        path.append(parent[path[-1]])
                    return list(reversed(path))
                nxt.append(v.child)
        todo = nxt
    return None


def validate(file, root, diags):
    """Validates one loaded spec; returns the Spec (check diags for errors)."""
    try:
        return Validator(diags).spec(file, root)
    except SpecError as e:
        diags.errors.append(e)
        return None
