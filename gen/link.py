"""Reference resolution and linking: what the names in a spec refer to.

Within one spec (Linker, run by the validator once a spec's states are
known): the GOTO, YIELD and next: targets and the phase each stays in, the
macros each snippet may call, the child each await names, the array each
join, select and START names, locals used outside their state, code that
falls off its end, and unreachable states. Across the specs of one run,
once all are loaded: every child future bound to its Spec (await and START
argument counts, cycles of containment), and the names every future's
generated code declares, checked against each other and against the C
headers (gen.probe).
"""
import re

from gen import probe
from gen.cscan import (ARRAY_MACRO, MACRO, MACRO_ARG, MAX_NESTING, SELF_MEMBER, SPAWN_ARG,
                       TooDeep,
                       call_arg_count, fall_through, strip_c)
from gen.errors import did_you_mean
from gen.spec import BUILTIN_CHILDREN, global_names


# OP(state), the request slot of an io state (templates/future.c.j2).
OP_REF = re.compile(r"\bOP\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)")


class Linker:
    """Resolves the references inside one spec; reports to diags."""

    def __init__(self, diags):
        self.d = diags

    def err(self, pos, msg):
        self.d.error(pos, msg)

    def macros(self, s, snip, st, branch=None):
        """Checks GOTO/YIELD/RETURN/DONE/KEEP/CANCELLED/SPAWN in one snippet;
        returns GOTO targets.

        branch is the io branch whose then this snippet is, if any.
        """
        targets = []
        clean = strip_c(snip.text)
        run, down = s.state_names()
        self.op_refs(s, snip, clean)
        for m in MACRO.finditer(clean):
            macro, pos = m.group(1), snip.node.pos_at(m.start())
            if st is None and macro != "CANCELLED":
                self.err(pos, f"{macro} is not allowed in drop code: drop is synchronous")
                continue
            if not m.group(2):
                self.err(pos, f"{macro} must be called: {macro}(...)")
                continue
            if macro == "CANCELLED":
                if st is not None and st.phase == "run":
                    self.err(pos, "CANCELLED is only allowed in teardown states and drop "
                             "code: it says why the future is being destroyed")
                elif not re.match(r"\s*\)", clean[m.end():]):
                    self.err(pos, "CANCELLED takes no argument: CANCELLED()")
                else:
                    s.uses_cancelled = True
            elif macro == "SPAWN":
                self.spawn(s, snip, clean, m, pos)
            elif macro == "KEEP":
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

    def op_refs(self, s, snip, clean):
        """OP(state) names the slot of an io state's one single-shot request:
        any other state has none (the name would not compile, or would be
        another state's slot)."""
        for m in OP_REF.finditer(clean):
            name = m.group(1)
            st = next((x for x in s.all_states() if x.name == name), None)
            pos = snip.node.pos_at(m.start(1))
            if st is None:
                self.err(pos, f"OP({name}): no state named '{name}'"
                         + did_you_mean(name, [x.name for x in s.all_states()]))
            elif st.kind != "io" or not st.branches or st.branches[0].multishot:
                self.err(pos, f"OP({name}): state '{name}' is not an io state with one "
                         "single-shot request (OP names that request's slot)")
            else:
                s.op_states.add(name)

    def spawn(self, s, snip, clean, m, pos):
        """SPAWN(F, args...): F is another spec (its arguments are counted
        by resolve_children, once every spec is loaded)."""
        am = SPAWN_ARG.match(clean, m.end())
        if not am:
            self.err(pos, "SPAWN takes a future's name, then its arguments: "
                     "SPAWN(F, args...)")
            return
        s.spawns.append((snip.node.pos_at(am.start(1)), am.group(1),
                         call_arg_count(clean, am.end(1)) - 1))

    def keep(self, s, snip, clean, m, pos, branch):
        am = MACRO_ARG.match(clean, m.end())
        owned = next((v for v in s.params + s.fields if am and v.name == am.group(1)
                      and v.owns == "file"), None)
        if owned is not None:
            return
        if branch is None or branch.group is None:
            self.err(pos, "KEEP is only allowed in the then of a recv with group "
                     "(it moves that then's buf), or on a param or field with "
                     "owns: file (the file is complete)")
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
                s.starts.append((pos, arrays[name], call_arg_count(clean, m.end(2))))

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
                if st.when is not None and re.search(r"\bCANCELLED\s*\(",
                                                     strip_c(st.when.text)):
                    s.uses_cancelled = True
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
            try:
                how = fall_through(snip.text)
            except TooDeep as e:
                self.err(snip.node.pos_at(e.offset), f"run state '{st.name}': code nested "
                         f"more than {MAX_NESTING} levels deep (blocks, if and else): the "
                         "fall-through check follows it no further")
                continue
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
            # GOTO's argument is macro-expanded before it is pasted.
            kinds.append(("state", st))
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
            if st.kind == "join":
                _join_names_vs_children(st, diags)
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
        for pos, name, nargs in s.spawns:
            target = specs.get(name)
            if target is None:
                diags.error(pos, f"SPAWN({name}, ...): unknown future '{name}' (no spec "
                            f"named on the command line or found as {name}.yaml on the "
                            "-I path)")
                continue
            want = len(target.params)
            if nargs != want:
                names = ", ".join(p.name for p in target.params) or "none"
                diags.error(pos, f"SPAWN({name}, ...): {name} takes {want} "
                            f"argument{'s' if want != 1 else ''} ({names}), got {nargs}")
    # A future that contains itself, directly or not, has no finite size.
    for s in specs.values():
        path = _cycle(s, specs)
        if path:
            first = next(v for v in s.members() if v.child == path[1])
            diags.error(first.child_pos, "child futures form a cycle: "
                        + " -> ".join(path) + " (a future cannot contain itself)")


def _join_names_vs_children(st, diags):
    """A join branch's result is a local of the state's then, declared
    among the results of the other branches, an awaited child's as a
    CHILD_out: a branch named after one of the generated names of a child
    the join awaits would hide it."""
    children = {b.child.child_spec.name: b.child.child_spec for b in st.branches
                if b.kind == "await" and b.child is not None
                and b.child.child_spec is not None
                and b.child.child_spec.name not in BUILTIN_CHILDREN}
    for name, child in sorted(children.items()):
        names = set(global_names(child))
        for b in st.branches:
            if b.name in names:
                diags.error(b.pos, f"branch name '{b.name}' is a name the generated "
                            f"code declares for child future '{name}'")


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
