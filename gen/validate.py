"""Validation: a loaded node tree to a checked Spec, or diagnostics.

Every error names the node it is about, so that the message reads
FILE:LINE:COL: error: ... at the offending key or value. Validation goes on
after an error where it can, so that one run reports as much as possible.
The names inside a spec's C text are resolved by gen.link, which the
validator runs once a spec's states are known.
"""
import re

from gen.cscan import MACRO, outer_const, split_array, strip_c, unbalanced
from gen.errors import SpecError, did_you_mean
from gen.link import Linker
from gen.ops import OPS
from gen.spec import BUILTIN_CHILDREN, Branch, Snippet, Spec, State, Var, global_names

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_COUNT = 4096

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

# Every name the generated code declares as a parameter or local of the
# functions that hold spec text (templates/future.c.j2 and the templates it
# pulls in; a test keeps the two in step): self and cx in each, and those a
# then sees. The future's own type is used in those functions, where a
# local of its name would hide it, so a future may not take any of them;
# nor may a join branch, whose result is a local of the same then.
GENERATED_LOCALS = frozenset(["self", "cx", "res", "out", "cqe_flags", "more", "buf",
                              "index", "timed_out"])

# Plain YAML scalars that YAML itself reads as null: in a spec they are
# left as text, and would reach the C as an undeclared name. (NULL is C.)
YAML_NULLS = frozenset(["null", "Null", "~"])

# File names are NAME.h and NAME.c, and every generated name starts with
# NAME: a bound keeps them usable (and --check agreeing with the real run).
MAX_IDENT = 64

# The state member is 16 bits; far fewer states than that keep generation
# and compilation fast.
MAX_STATES = 4096

TOP_KEYS = ["future", "doc", "include", "output", "params", "fields", "states",
            "teardown", "drop", "send"]
STATE_KEYS = ["doc", "do", "io", "args", "await", "join", "select", "then",
              "when", "next", "locals", "timeout_ms", "multishot"]
ACTIONS = ["do", "io", "await", "join", "select"]
BRANCH_KEYS = ["io", "args", "await", "then", "timeout_ms", "multishot"]
VAR_KEYS = ["name", "type", "init", "future", "count", "owns"]
# What owns: may say a param or field owns (docs/spec-language.md, "Owned
# resources").
OWNS = ["fd", "file"]
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


class Validator:
    def __init__(self, diags):
        self.d = diags
        self.link = Linker(diags)

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
        if node.folded_comment is not None:
            self.err(node.folded_comment, "this // comment would take in the code on the "
                     "lines that YAML folds into its line: write the code as a literal "
                     "block scalar (|)")
            return None
        if node.style is None and node.value in YAML_NULLS:
            if allow_empty:
                # Nothing, as YAML means it (drop: ~ is drop: "").
                empty = Snippet(node)
                empty.text = ""
                return empty
            self.err(node.pos, f"{what} is YAML null ('{node.value}'), not C: write the C "
                     f"text (quoted, if '{node.value}' is meant as C)")
            return None
        if node.value.rstrip().endswith("\\"):
            self.err(node.pos_at(len(node.value.rstrip()) - 1),
                     f"{what} ends with a backslash: the line continuation would join "
                     "the generated code that follows")
            return None
        bad = unbalanced(node.value)
        if bad is not None:
            offset, message = bad
            head, _, why = message.partition(": ")
            self.err(node.pos_at(offset), f"{head} in {what}" + (f": {why}" if why else ""))
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
            if s.name in GENERATED_LOCALS:
                self.err(s.name_pos, f"future name '{s.name}' is reserved: the generated "
                         "code declares a parameter or local of that name")
                s.name = None
        if "doc" in m and self.expect(m["doc"], "scalar", "doc"):
            s.doc = m["doc"].value.strip()
        if "include" in m:
            self.includes(s, m["include"])
        if "output" in m:
            out = self.text(m["output"], "output")
            if out and self.output_ok(out.text.strip(), m["output"].pos):
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
                self.link.macros(s, s.drop, None)
        n = len(s.all_states())
        if n > MAX_STATES:
            self.err(root.key_pos["states"], f"{n} states: a future has at most "
                     f"{MAX_STATES} (run and teardown together)")
        self.unique_names(s)
        self.params_vs_api(s)
        self.link.state_refs(s)
        return s

    def output_ok(self, t, pos):
        """Checks that RETURN can store a value of output type t: it declares
        one (void cannot be), then assigns it to the caller's output (an
        array cannot be, nor a const object)."""
        why = None
        if strip_c(t).split() == ["void"]:
            why = "is void: a future completes with a value (leave output out for " \
                  "int, and RETURN(0))"
        elif split_array(t)[1]:
            why = "is an array: C neither assigns nor returns arrays (wrap it in a struct)"
        elif outer_const(t):
            why = "is const: RETURN stores the value into the caller's output (drop " \
                  "the outer const)"
        if why:
            self.err(pos, f"output '{t}' {why}")
        return why is None

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
        signatures and bodies use the future's own generated names; a join
        branch's result is a local of the state's then, where GOTO stores
        F_S_STATE and RETURN declares an F_out (shadowed, the first would
        store the branch's result as the state)."""
        if s.name is None:
            return
        api = set(global_names(s))
        for v in s.params:
            if v.name in api:
                self.err(v.pos, f"param name '{v.name}' is a name the generated code "
                         f"declares for future '{s.name}'")
        for st in s.all_states():
            for b in st.branches:
                if st.kind == "join" and b.name in api:
                    self.err(b.pos, f"branch name '{b.name}' is a name the generated "
                             f"code declares for future '{s.name}'")

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
                   and (k != "count" or (allow_child and what == "field"))
                   and (k != "owns" or what in ("param", "field"))]
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
            if "owns" in m and "owns" in allowed:
                self.err(node.key_pos["owns"], f"child future '{name}' cannot have owns: "
                         "a child releases what it owns itself")
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
        if outer_const(ctype):
            self.err(m["type"].pos, f"{what} '{name}' has type '{t.text.strip()}': the "
                     "generated code assigns it (drop the outer const)")
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
        if "owns" in m and "owns" in allowed:
            v.owns = self.owns(m["owns"], v, what, "init" in m)
        return v

    def owns(self, node, v, what, has_init):
        """owns: fd (an int the future closes) or owns: file (a path the
        future removes unless it was kept); returns the kind or None."""
        if not self.expect(node, "scalar", f"owns of '{v.name}'"):
            return None
        kind = node.value.strip()
        if kind not in OWNS:
            self.err(node.pos, f"owns of '{v.name}' must be one of: {', '.join(OWNS)}, "
                     f"not '{kind}'" + (did_you_mean(kind, OWNS) or ""))
            return None
        if kind == "fd" and (v.ctype != "int" or v.array):
            self.err(node.pos, f"{what} '{v.name}' owns: fd but has type "
                     f"'{v.ctype}{v.array}': an owned descriptor is an int")
            return None
        if kind == "fd" and what == "field" and not has_init:
            self.err(node.pos, f"field '{v.name}' owns: fd but has no init: give it "
                     "init: \"-1\" (or the descriptor it starts with), since it is "
                     "closed whenever it is >= 0")
            return None
        if kind == "file" and not (v.array and v.ctype == "char" and v.array.count("[") == 1
                                   or not v.array and re.fullmatch(
                                       r"(const\s+)?char\s*\*", v.ctype)):
            self.err(node.pos, f"{what} '{v.name}' owns: file but has type "
                     f"'{v.ctype}{v.array}': an owned file is named by a path, "
                     "a char[N] or a (const) char *")
            return None
        return kind

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
                # Whether to say goodbye may depend on why teardown runs.
                self.no_macros(st.when, "when",
                               ("CANCELLED",) if st.phase == "teardown" else ())
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
            if name in GENERATED_LOCALS:
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
        named = set()       # given, even if in error: not also reported missing
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
                named.add(key)
                t = self.text(val, f"argument '{key}'")
                if t:
                    self.no_macros(t, f"argument '{key}'")
                    given[key] = t
        where = node.pos if node is not None else owner.pos
        if op.name == "timeout":
            if ("ms" in named) == ("ns" in named):
                self.err(where, "io 'timeout' needs exactly one of the arguments ms, ns")
        elif "group" in named:
            both = [a for a in ("buf", "len") if a in named]
            if both:
                self.err(node.key_pos[both[0]], f"io '{op.name}' takes either group or "
                         "buf and len: with group, the kernel picks the buffer")
            if "ioprio" in named:
                self.err(node.key_pos["ioprio"], f"io '{op.name}' takes ioprio only with "
                         "buf and len: a recv with group is armed by its group's rules")
            for arg in [a for a, default in op.args if default is None
                        and a not in named and a not in ("buf", "len")]:
                self.err(where, f"io '{op.name}' is missing required argument '{arg}'")
            b.group = given.pop("group", None)
        elif not (op.group and self.wants_multishot(owner)):
            # (A multishot recv without group is told that it needs group.)
            missing = [a for a, default in op.args if default is None and a not in named]
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

    def no_macros(self, snip, what, allow=()):
        for m in MACRO.finditer(strip_c(snip.text)):
            if m.group(1) not in allow:
                self.err(snip.node.pos_at(m.start()), f"{m.group(1)} is not allowed in "
                         f"{what}" + (" (CANCELLED() is allowed in the when of a teardown "
                                      "state)" if m.group(1) == "CANCELLED" else ""))


def validate(file, root, diags):
    """Validates one loaded spec; returns the Spec (check diags for errors)."""
    try:
        return Validator(diags).spec(file, root)
    except SpecError as e:
        diags.errors.append(e)
        return None
