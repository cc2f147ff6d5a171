"""The spec model: what validation makes of one spec.

A Spec holds its params, fields and states, each with the Snippets of C
text it came with (a Snippet knows its spec file and line, for #line). The
validator builds them, the linker binds each child future to its Spec, and
gen.model turns a linked Spec into the names the templates print. Nothing
here reports an error.
"""


# What generated code declares at file scope for future F, besides F_S_STATE
# for each state (keep in step with templates/future.h.j2 and future.c.j2,
# and the templates future.c.j2 pulls in).
GLOBAL_SUFFIXES = ["", "_out", "_state", "_init", "_poll", "_poll_drop", "_drop",
                   "_state_name", "_vtable", "_dyn", "_spawn", "_spawn_on", "_block_on",
                   "__drop_code", "__teardown", "__quiesce", "__quiesce_sync",
                   "__quiesce_arrays",
                   "__vt_poll", "__vt_poll_drop", "__vt_drop", "__naive"]


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
        self.owns = None            # "fd" or "file": the future owns the resource


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
        self.spawns = []            # (pos, future name, argument count) of each SPAWN
        self.uses_cancelled = False # CANCELLED() is called: the future records RETURN
        self.op_states = set()      # the states OP(state) names
        self._state_names = None    # see state_names

    def all_states(self):
        return self.states + self.teardown

    def state_names(self):
        """The names of the run states and of the teardown states, as sets:
        made once, when the states are known, since every snippet's GOTOs
        are checked against them."""
        if self._state_names is None:
            self._state_names = ({x.name for x in self.states},
                                 {x.name for x in self.teardown})
        return self._state_names

    def members(self):
        yield from self.params
        yield from self.fields
        for s in self.all_states():
            yield from s.locals


def global_names(s):
    """The names generated code declares at file scope for Spec s."""
    yield from (s.name + suffix for suffix in GLOBAL_SUFFIXES)
    for st in s.all_states():
        yield f"{s.name}_S_{st.name}"
    for v in s.fields:
        if v.count:
            yield f"{s.name}__start_{v.name}"


class _Builtin:
    """A child future the runtime provides: polldrop.h declares it."""

    def __init__(self, name, params):
        self.name = name
        self.params = [Var(n, None, ctype=t) for n, t in params]


# pd_join: a join handle on a spawned task (polldrop.h).
BUILTIN_CHILDREN = {"pd_join": _Builtin("pd_join", [("task", "pd_task *"),
                                                    ("out", "void *")])}
