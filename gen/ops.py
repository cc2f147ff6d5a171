"""The io_uring operations a spec may name (DESIGN.md, io operations v1).

Each op lists its arguments in the order the runtime's pd__prep_OP helper
takes them; None marks a required argument, a string is the C default.
"""


class Op:
    def __init__(self, name, args, returns_fd=False):
        self.name = name
        self.args = args
        self.returns_fd = returns_fd

    def arg_names(self):
        return [name for name, _ in self.args]


OPS = {op.name: op for op in [
    Op("nop", []),
    Op("read", [("fd", None), ("buf", None), ("len", None), ("offset", "-1")]),
    Op("write", [("fd", None), ("buf", None), ("len", None), ("offset", "-1")]),
    Op("openat", [("path", None), ("flags", None), ("dfd", "AT_FDCWD"), ("mode", "0")],
       returns_fd=True),
    # how points to a struct open_how that must stay valid until the op is
    # submitted: keep it in the future (a field or the state's local).
    Op("openat2", [("path", None), ("how", None), ("dfd", "AT_FDCWD")], returns_fd=True),
    Op("close", [("fd", None)]),
    Op("fsync", [("fd", None), ("flags", "0")]),
    # timeout takes exactly one of ms or ns; the generator converts to ns.
    Op("timeout", [("ms", None), ("ns", None)]),
    Op("socket", [("domain", None), ("type", None), ("protocol", "0")], returns_fd=True),
    Op("accept", [("fd", None), ("flags", "SOCK_CLOEXEC")], returns_fd=True),
    Op("connect", [("fd", None), ("addr", None), ("addrlen", None)]),
    Op("recv", [("fd", None), ("buf", None), ("len", None), ("flags", "0")]),
    Op("send", [("fd", None), ("buf", None), ("len", None), ("flags", "MSG_NOSIGNAL")]),
    Op("shutdown", [("fd", None), ("how", None)]),
]}
