"""Model: a validated Spec to the facts the templates print.

Everything the C code needs by name is decided here (member names, the
storage each state overlaps with the others, the include list), so that the
templates only arrange it.
"""
import os
import re

from gen.cscan import MACRO, MACRO_ARG, strip_c
from gen.ops import OPS
from gen.spec import BUILTIN_CHILDREN


class SlotNames:
    """The names of the members that hold a state's op slots, timers and
    child bookkeeping, after the state: pd__STATE_op for the op of an io
    state (pd__STATE_cs and pd__STATE_out for the child of an await),
    pd__STATE_BRANCH_op for a branch of a join or select,
    pd__STATE_deadline_op for the timer of timeout_ms over a whole state,
    pd__STATE_winner for the winner of a select over an array.

    A spec's own members cannot start with pd_ (validation refuses such
    names), so only the generator's names can meet: pd__st, pd__sub,
    pd__phase, pd__next, an array's pd__ARRAY_cs and pd__ARRAY_out (the
    array macros build those from the array's name), and one state's names
    with another's (state a_b's pd__a_b_op and branch b of state a). A name
    that meets one given before takes the first free of BASE2, BASE3...:
    the same spec always gets the same names.
    """

    def __init__(self, taken):
        self.taken = set(taken)

    def base(self, want, suffixes):
        """A free base for the names base + suffix, which it then takes."""
        base, n = want, 1
        while any(base + s in self.taken for s in suffixes):
            n += 1
            base = f"{want}{n}"
        self.taken.update(base + s for s in suffixes)
        return base


class BranchModel:
    def __init__(self, st, bi, b, names):
        self.name = b.name
        self.index = bi
        self.kind = b.kind
        self.then = b.then
        self.timeout = b.timeout
        want = f"pd__{st.name}" if b.name is None else f"pd__{st.name}_{b.name}"
        self.storage = []
        self.multishot = False
        if b.kind == "io":
            self.op = b.op.name
            self.needs_ts = b.op.name == "timeout" or b.timeout is not None
            tag = names.base(want, ["_op", "_ts"] if self.needs_ts else ["_op"])
            self.slot = f"{tag}_op"
            self.multishot = b.multishot
            self.group = b.group
            # Multishot requests and provided buffers take an extended slot
            # (pd__mop) and its family of runtime helpers.
            self.fam = "mop" if b.multishot or b.group is not None else "op"
            self.storage.append((f"pd__{self.fam}", self.slot, "", None))
            # Where then's cqe_flags come from: the slot, or the popped completion.
            self.cflags = "pd__c.flags" if self.fam == "mop" else f"self->{self.slot}.cflags"
            self.ts = f"{tag}_ts"
            if self.needs_ts:
                self.storage.append(("struct __kernel_timespec", self.ts, "", None))
            # A close reaped while quiescing (its then never ran) has still
            # released its fd: forget it, so that drop code cannot close the
            # same number again. Possible when the fd is a member.
            fd = b.args.get("fd") if b.op.name == "close" else None
            self.closes = fd.text.strip() if fd is not None and \
                re.fullmatch(r"self->[A-Za-z_]\w*", fd.text.strip()) else None
            if b.op.name == "timeout":
                self.timeout_arg = b.args.get("ms") or b.args.get("ns")
                self.timeout_scale = "1000000LL" if "ms" in b.args else "1LL"
                self.args = []
            else:
                self.args = [b.args.get(name) or default for name, default in b.op.args]
            self.prep = self.op
            if b.group is not None:
                self.prep = "recv_grp"
                fd, flags = self.args[0], self.args[3]
                self.args = [fd, b.group, flags, "1" if b.multishot else "0"]
            elif b.multishot:
                # One request, many completions: no per-completion out-arguments.
                self.prep = f"{self.op}_ms"
                self.args = self.args[:2]
        else:
            child = b.child
            self.child = child.name
            self.child_type = child.child
            self.child_args = b.child_args
            tag = names.base(want, ["_cs", "_out"])
            self.cs = f"{tag}_cs"
            self.out = f"{tag}_out"
            self.storage.append(("uint8_t", self.cs, "", None))
            self.storage.append((f"{child.child}_out", self.out, "", None))


class DeadlineModel:
    """timeout_ms over a whole await, join or select: one timeout request,
    and whether it fired before every branch was done."""

    def __init__(self, st, ms, names):
        self.ms = ms
        self.index = -1             # never a branch's index
        self.kind = "io"
        self.op = "timeout"
        self.closes = None
        self.fam = "op"             # a plain op slot
        self.multishot = False
        tag = names.base(f"pd__{st.name}_deadline", ["_op", "_ts", ""])
        self.slot = f"{tag}_op"
        self.ts = f"{tag}_ts"
        self.fired = tag
        self.owned_close, self.arms, self.disarms = False, None, None
        self.storage = [("pd__op", self.slot, "", None),
                        ("struct __kernel_timespec", self.ts, "", None),
                        ("uint8_t", self.fired, "", None)]


def _member(snip, names):
    """The member NAME when an argument is exactly self->NAME and NAME is
    one of names, else None."""
    if snip is None:
        return None
    m = re.fullmatch(r"self\s*->\s*([A-Za-z_]\w*)", snip.text.strip())
    return m.group(1) if m and m.group(1) in names else None


def _owned_ops(spec, st, ops):
    """What an op does to what the future owns (docs/spec-language.md,
    "Owned resources"): a close of an owned fd forgets it (owned_close),
    an open of an owned file's path makes the file the future's (arms),
    an unlink or a rename of it away ends that (disarms)."""
    fds = {v.name for v in list(spec.params) + list(spec.fields) if v.owns == "fd"}
    files = {v.name for v in list(spec.params) + list(spec.fields) if v.owns == "file"}
    for b, sb in zip(ops, [x for x in st.branches if x.kind == "io"]):
        b.owned_close = b.closes is not None and _member(sb.args.get("fd"), fds) is not None
        b.arms = b.disarms = None
        if b.op in ("openat", "openat2"):
            name = _member(sb.args.get("path"), files)
            b.arms = f"self->pd__own_{name}" if name else None
        elif b.op in ("unlinkat", "renameat"):
            name = _member(sb.args.get("path" if b.op == "unlinkat" else "oldpath"), files)
            b.disarms = f"self->pd__own_{name}" if name else None


class StateModel:
    def __init__(self, spec, st, si, names):
        self.name = st.name
        self.index = si
        self.phase = st.phase
        self.kind = st.kind
        self.doc = st.doc
        self.enum = f"{spec.name}_S_{st.name}"
        self.code = st.code
        self.when = st.when
        self.next = st.next
        self.jumps, self.macros = _jumps(st)
        self.locals = [VarModel(v) for v in st.locals]
        # Spec initialisers run on entry, as (name, Snippet) for render.inits.
        self.local_inits = [(v.name, v.init) for v in self.locals if v.init]
        self.branches = [BranchModel(st, bi, b, names) for bi, b in enumerate(st.branches)]
        self.ops = [b for b in self.branches if b.kind == "io"]
        _owned_ops(spec, st, self.ops)
        self.children = [b for b in self.branches if b.kind == "await"]
        self.multishot = st.kind == "io" and self.branches[0].multishot
        # A select with multishot branches: their thens run while it waits.
        self.ms_select = st.kind == "select" and any(b.multishot for b in self.branches)
        # What this state overlaps with the others: its locals and the
        # op slots and child bookkeeping of its branches, as (type, name,
        # array suffix, where in the spec or None).
        self.storage = [(v.decl_type, v.name, v.array, v.where) for v in self.locals]
        for b in self.branches:
            self.storage.extend(b.storage)
        self.array = ArrayModel(st.array) if st.array is not None else None
        if self.array is not None and self.kind == "select":
            # Which member won (or the deadline, as count).
            self.winner = names.base(f"pd__{st.name}_winner", [""])
            self.storage.append(("int16_t", self.winner, "", None))
        self.deadline = None
        if st.deadline is not None:
            self.deadline = DeadlineModel(st, st.deadline, names)
            self.storage.extend(self.deadline.storage)
            # Quiescing cancels and reaps it with the branches' ops.
            self.ops.append(self.deadline)
        self.storage_decls = [(w, f"{t} {n}{a};") for t, n, a, w in self.storage]


class VarModel:
    def __init__(self, v):
        self.name = v.name
        self.init = v.init
        self.owns = v.owns
        self.child = v.child
        self.array = v.array if not v.count else f"[{v.count}]"
        self.count = v.count
        self.decl_type = v.child or v.ctype
        self.where = v.where

    def decl(self):
        sep = "" if self.decl_type.endswith("*") else " "
        return f"{self.decl_type}{sep}{self.name}{self.array}"



class ArrayModel:
    """An array of child futures: the members, their progress and outputs."""

    def __init__(self, v):
        self.name = v.name
        self.type = v.child
        self.count = v.count
        self.cs = f"pd__{v.name}_cs"
        self.outs = f"pd__{v.name}_out"
        params = [VarModel(p) for p in v.child_spec.params] if v.child_spec else []
        self.param_list = "".join(", " + p.decl() for p in params)
        self.param_names = "".join(", " + p.name for p in params)

    def args(self):
        """pd__arr_* arguments after cs and n: the vtable, members, outputs."""
        return f"&{self.type}_vtable, self->{self.name}, self->{self.outs}"


class FutureModel:
    def __init__(self, spec, spec_path, out_dir):
        self.name = spec.name
        self.spec_path = spec_path
        self.doc = spec.doc
        self.output = spec.output
        self.output_where = spec.output_where
        self.includes = spec.includes
        # Under #line: a header that cannot be found is reported at the spec.
        self.include_decls = [(w, f"#include {i}")
                              for w, i in zip(spec.include_where, spec.includes)]
        self.params = [VarModel(v) for v in spec.params]
        # Declarations built from type: strings carry their place in the
        # spec, for #line (render.decls and render.at).
        self.param_list = "".join(", " + v.decl() for v in self.params)
        self.params_where = self.params[0].where if self.params else None
        # The generated functions' own parameters in the header: the usual
        # names, unless a param of the spec has taken them.
        taken = {v.name for v in spec.params}
        self.rt_name = "pd__rt" if "rt" in taken else "rt"
        self.out_name = "pd__out" if "out" in taken else "out"
        self.target_name = "pd__target" if "target" in taken else "target"
        self.fields = [VarModel(v) for v in spec.fields]
        self.field_inits = [(v.name, v.init) for v in self.fields if v.init]
        self.members = [(v.where, v.decl() + "; /* param */") for v in self.params] + \
            [(v.where, v.decl() + (";  /* child future */" if v.child else ";"))
             for v in self.fields]
        self.arrays = [ArrayModel(v) for v in spec.fields if v.count]
        for a in self.arrays:
            self.members += [
                (None, f"uint8_t {a.cs}[{a.count}];  /* {a.name}: PD__CH_* of each member */"),
                (None, f"{a.type}_out {a.outs}[{a.count}];  /* {a.name}: their outputs */")]
        # What the future owns (owns: fd, owns: file): released after the
        # teardown states and before the drop code, in this order, each
        # numbered from 1 by the request that releases it (pd__sub).
        self.owned = []
        owners = list(spec.params) + list(spec.fields)
        # Descriptors first: a file is removed once closed.
        for v in [v for v in owners if v.owns == "fd"] + [v for v in owners if v.owns == "file"]:
            if v.owns == "fd":
                self.owned.append({"kind": "fd", "name": v.name, "live": f"self->{v.name} >= 0",
                                   "n": len(self.owned) + 1})
            elif v.owns == "file":
                self.owned.append({"kind": "file", "name": v.name,
                                   "live": f"self->pd__own_{v.name}",
                                   "flag": f"self->pd__own_{v.name}",
                                   "n": len(self.owned) + 1})
                self.members.append((None, f"uint8_t pd__own_{v.name};  /* {v.name} is "
                                     "this future's file, to remove unless kept */"))
        self.owned_files = [o["name"] for o in self.owned if o["kind"] == "file"]
        self.owned_param_fds = [v.name for v in spec.params if v.owns == "fd"]
        self.uses_cancelled = spec.uses_cancelled
        self.spawns = sorted({name for _, name, _ in spec.spawns})
        self.spawn_headers = [f'"{n}.h"' for n in self.spawns]
        self.drop = spec.drop
        self.has_teardown = bool(spec.teardown)
        self.send = spec.send
        states = spec.all_states()
        names = SlotNames(["pd__st", "pd__sub", "pd__phase", "pd__next", "pd__returned",
                           "pd__own_op"]
                          + [f"pd__own_{n}" for n in self.owned_files]
                          + [n for a in self.arrays for n in (a.cs, a.outs)])
        self.states = [StateModel(spec, st, si, names) for si, st in enumerate(states)]
        self.run_states = [s for s in self.states if s.phase == "run"]
        # The slot each OP(state) of the spec's code names (gen.link checked
        # that each is an io state's one single-shot request).
        self.op_slots = [(s.name, s.branches[0].slot) for s in self.states
                         if s.name in spec.op_states]
        self.teardown_states = [s for s in self.states if s.phase == "teardown"]
        self.stateful = [s for s in self.states if s.storage]
        self.has_multishot = any(s.multishot or s.ms_select for s in self.states)
        self.has_ext = any(b.fam == "mop" for s in self.states for b in s.ops)
        # pd_buf fields start empty and are released after the drop code.
        self.buf_fields = [v for v in self.fields if v.decl_type == "pd_buf"]
        children = {v.child for v in spec.members()
                    if v.child and v.child not in BUILTIN_CHILDREN}
        self.child_headers = sorted(f'"{c}.h"' for c in children)
        # What the constants usual in the ops' arguments need (POLLIN...).
        self.op_headers = sorted({h for s in self.states for b in s.ops
                                  for h in OPS[b.op].headers})
        self.h_name = f"{spec.name}.h"
        self.h_path = os.path.join(out_dir, self.h_name)
        self.out_dir = out_dir
        self.c_name = os.path.join(out_dir, f"{spec.name}.c")
        # Case is kept: futures kid and Kid must not share a guard.
        self.guard = f"POLLDROP_GEN_{spec.name}_H"


def _jumps(st):
    """What a state's code does to control, for diagrams: the (macro, target)
    of each GOTO and YIELD in its code and its branches' thens, once each in
    order, and the set of macros the code calls."""
    jumps, macros = [], set()
    for snip in [st.code] + [b.then for b in st.branches]:
        if snip is None:
            continue
        clean = strip_c(snip.text)
        for m in MACRO.finditer(clean):
            macros.add(m.group(1))
            am = MACRO_ARG.match(clean, m.end()) if m.group(2) else None
            if m.group(1) in ("GOTO", "YIELD") and am and \
                    (m.group(1), am.group(1)) not in jumps:
                jumps.append((m.group(1), am.group(1)))
    return jumps, macros


def build(spec, spec_path, out_dir):
    """The model of one validated, child-resolved Spec."""
    return FutureModel(spec, spec_path, out_dir)
