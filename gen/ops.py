"""The io_uring operations a spec may name: the single table of them.

This table drives the generator (which arguments an `io:` state takes,
which are required, the order of the runtime's pd__prep_OP call, whether
the result is an fd to close when nobody takes it), the JSON Schema
(scripts/spec_schema.py), and the op table of docs/spec-language.md
(scripts/ops_doc.py writes it; tests/test_ops.py fails while it is stale
and checks every pd__prep_OP helper of runtime/pd_prep.h against the
argument names and C types listed here).

Each op lists its arguments in the order its pd__prep_OP helper takes them
after (cx, op). An argument's default is None when it is required, or the
C text the generator passes when the spec leaves it out.
"""


class Arg:
    def __init__(self, name, ctype, default=None, doc=""):
        self.name = name
        self.ctype = ctype          # the C type of the helper's parameter
        self.default = default      # None: required
        self.doc = doc

    def __iter__(self):
        # (name, default) pairs, as the generator's callers unpack them.
        return iter((self.name, self.default))


class Op:
    def __init__(self, name, args, prep, doc, returns_fd=False, multishot=False,
                 headers=(), since=None, result=None, group=False, ms_args=(),
                 ms_note=None):
        self.name = name
        self.args = args
        self.prep = prep                # the liburing helper, or how it is prepared
        self.doc = doc
        self.returns_fd = returns_fd    # res >= 0 is an fd, closed if never taken
        self.multishot = multishot      # the kernel can complete it more than once
        self.headers = tuple(headers)   # what the args' usual constants need
        self.since = since              # the first kernel that has it, if after 5.19
        self.result = result            # what res means on success
        self.group = group              # takes `group:` (a provided buffer) instead of buf, len
        self.ms_args = tuple(ms_args)   # the arguments its multishot form takes
        self.ms_note = ms_note          # what to do instead of the others

    def arg_names(self):
        return [a.name for a in self.args] + (["group"] if self.group else [])

    def arg(self, name):
        return next((a for a in self.args if a.name == name), None)


FD = Arg("fd", "int")
AT = Arg("dfd", "int", "AT_FDCWD", "directory a relative path starts from")

OPS = {op.name: op for op in [
    Op("nop", [], "io_uring_prep_nop", "does nothing; completes with 0"),
    Op("read", [FD, Arg("buf", "void *"), Arg("len", "size_t"),
                Arg("offset", "long long", "-1", "-1: the file position")],
       "io_uring_prep_read", "reads into buf", result="bytes read; 0 at end of file"),
    Op("write", [FD, Arg("buf", "const void *"), Arg("len", "size_t"),
                 Arg("offset", "long long", "-1", "-1: the file position")],
       "io_uring_prep_write", "writes from buf", result="bytes written"),
    Op("readv", [FD, Arg("iov", "const struct iovec *"), Arg("iovcnt", "unsigned"),
                 Arg("offset", "long long", "-1", "-1: the file position")],
       "io_uring_prep_readv", "scatter read into iov[0..iovcnt)", result="bytes read"),
    Op("writev", [FD, Arg("iov", "const struct iovec *"), Arg("iovcnt", "unsigned"),
                  Arg("offset", "long long", "-1", "-1: the file position")],
       "io_uring_prep_writev", "gather write from iov[0..iovcnt)", result="bytes written"),
    Op("openat", [Arg("path", "const char *"), Arg("flags", "int"), AT,
                  Arg("mode", "unsigned", "0")],
       "io_uring_prep_openat", "opens path", returns_fd=True, result="the new fd"),
    Op("openat2", [Arg("path", "const char *"), Arg("how", "struct open_how *",
                                                   doc="flags, mode and resolve"), AT],
       "io_uring_prep_openat2", "opens path as openat2(2) does; RESOLVE_BENEATH in "
       "how->resolve refuses any path that leaves dfd", returns_fd=True,
       result="the new fd"),
    Op("close", [FD], "io_uring_prep_close", "closes fd"),
    Op("fsync", [FD, Arg("flags", "unsigned", "0", "IORING_FSYNC_DATASYNC")],
       "io_uring_prep_fsync", "flushes fd to storage"),
    Op("ftruncate", [FD, Arg("len", "long long")],
       "by hand: opcode 55 (IORING_OP_FTRUNCATE), which liburing 2.3 lacks",
       "sets fd's size to len; -EOPNOTSUPP where the kernel lacks it", since="6.9"),
    # timeout takes exactly one of ms or ns; the generator converts to ns.
    Op("timeout", [Arg("ms", "long long", doc="milliseconds"),
                   Arg("ns", "long long", doc="nanoseconds")],
       "io_uring_prep_timeout", "waits; exactly one of ms, ns",
       result="0 when the time elapsed"),
    Op("unlinkat", [Arg("path", "const char *"),
                    Arg("flags", "int", "0", "AT_REMOVEDIR removes a directory"), AT],
       "io_uring_prep_unlinkat", "removes path"),
    Op("renameat", [Arg("oldpath", "const char *"), Arg("newpath", "const char *"),
                    Arg("flags", "unsigned", "0", "RENAME_NOREPLACE, RENAME_EXCHANGE"),
                    Arg("olddfd", "int", "AT_FDCWD", "directory oldpath starts from"),
                    Arg("newdfd", "int", "AT_FDCWD", "directory newpath starts from")],
       "io_uring_prep_renameat", "renames oldpath to newpath"),
    Op("mkdirat", [Arg("path", "const char *"), Arg("mode", "unsigned", "0777"), AT],
       "io_uring_prep_mkdirat", "creates the directory path"),
    Op("statx", [Arg("path", "const char *"), Arg("buf", "struct statx *"),
                 Arg("mask", "unsigned", "STATX_BASIC_STATS"),
                 Arg("flags", "int", "0", "AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW"), AT],
       "io_uring_prep_statx", "fills buf about path"),
    Op("splice", [Arg("fd_in", "int"), Arg("fd_out", "int"), Arg("len", "unsigned"),
                  Arg("off_in", "long long", "-1", "-1: fd_in's position (a pipe: -1)"),
                  Arg("off_out", "long long", "-1", "-1: fd_out's position"),
                  Arg("flags", "unsigned", "0", "SPLICE_F_*")],
       "io_uring_prep_splice", "moves len bytes between fds; one must be a pipe",
       result="bytes moved; 0 at end of input"),
    Op("poll_add", [FD, Arg("events", "unsigned", doc="POLLIN, POLLOUT, ...")],
       "io_uring_prep_poll_add", "waits until fd is ready; `multishot: true` "
       "(IORING_POLL_ADD_MULTI) completes each time fd becomes ready again",
       headers=["<poll.h>"], result="the ready events", multishot=True,
       ms_args=["fd", "events"]),
    Op("socket", [Arg("domain", "int"), Arg("type", "int"), Arg("protocol", "int", "0")],
       "io_uring_prep_socket", "creates a socket", returns_fd=True, result="the new fd"),
    Op("accept", [FD, Arg("flags", "int", "SOCK_CLOEXEC"),
                  Arg("addr", "void *", "NULL", "where the peer's address goes"),
                  Arg("addrlen", "socklen_t *", "NULL",
                      "in: addr's size; out: the address's length")],
       "io_uring_prep_accept", "accepts a connection on the listener fd; "
       "`multishot: true` accepts every connection with one request (no addr then)",
       returns_fd=True, result="the connection's fd", multishot=True,
       ms_args=["fd", "flags"],
       ms_note="getpeername(2) on an accepted fd gives the peer's address"),
    Op("bind", [FD, Arg("addr", "const void *", doc="the address, in the future"),
                Arg("addrlen", "unsigned", doc="its size")],
       "by hand: opcode 56 (IORING_OP_BIND), which liburing 2.3 lacks",
       "binds the socket fd to addr; where the kernel lacks the op, bind(2) at once",
       since="6.11"),
    Op("listen", [FD, Arg("backlog", "int", "SOMAXCONN",
                          "the queue of connections not yet accepted")],
       "by hand: opcode 57 (IORING_OP_LISTEN), which liburing 2.3 lacks",
       "makes the bound socket fd a listener; where the kernel lacks the op, "
       "listen(2) at once", since="6.11", headers=["<sys/socket.h>"]),
    Op("connect", [FD, Arg("addr", "const void *"), Arg("addrlen", "unsigned")],
       "io_uring_prep_connect", "connects fd to addr"),
    Op("recv", [FD, Arg("buf", "void *"), Arg("len", "size_t"), Arg("flags", "int", "0"),
                Arg("ioprio", "unsigned", "0",
                    "IORING_RECVSEND_POLL_FIRST: no try before the socket is readable")],
       "io_uring_prep_recv", "receives into buf; or, with `group:` (a pd_bufgroup *) "
       "instead of buf and len, into a buffer the kernel picks, which then sees as "
       "`pd_buf buf`; `multishot: true` (with group) keeps receiving",
       result="bytes received; 0 at end of stream", multishot=True, group=True,
       ms_args=["fd", "group", "flags"]),
    Op("send", [FD, Arg("buf", "const void *"), Arg("len", "size_t"),
                Arg("flags", "int", "MSG_NOSIGNAL")],
       "io_uring_prep_send", "sends from buf", result="bytes sent"),
    Op("send_zc", [FD, Arg("buf", "const void *"), Arg("len", "size_t"),
                   Arg("flags", "int", "MSG_NOSIGNAL"),
                   Arg("zc_flags", "unsigned", "0", "IORING_RECVSEND_*")],
       "io_uring_prep_send_zc",
       "sends from buf without copying: two completions, the result and the "
       "notification that the kernel is done with buf; the state ends after both",
       result="bytes sent"),
    Op("recvmsg", [FD, Arg("msg", "struct msghdr *"), Arg("flags", "unsigned", "0")],
       "io_uring_prep_recvmsg", "receives into msg's iovecs (and control data)",
       result="bytes received"),
    Op("sendmsg", [FD, Arg("msg", "const struct msghdr *"),
                   Arg("flags", "unsigned", "MSG_NOSIGNAL")],
       "io_uring_prep_sendmsg", "sends msg's iovecs", result="bytes sent"),
    Op("shutdown", [FD, Arg("how", "int", doc="SHUT_RD, SHUT_WR or SHUT_RDWR")],
       "io_uring_prep_shutdown", "shuts down part of a connection"),
]}


# How the epoll engine (runtime/engine_epoll*.c) runs each op, for the op
# table's column of that name (docs/design.md, "Engines"). On io_uring the
# kernel runs them all (ftruncate from Linux 6.9). No op of this table
# completes with -EOPNOTSUPP on epoll; tests/test_ops.py checks that every
# op has an entry.
READINESS = "tried at once; waits for epoll readiness on EAGAIN"
WORKER = "a worker thread (cannot be interrupted: a cancel waits for it)"
EPOLL = {
    "nop": "at once",
    "read": "sockets, pipes: " + READINESS + "; files: at once from the page cache, "
            "else a worker thread",
    "write": "sockets, pipes: " + READINESS + "; files: " + WORKER,
    "readv": "as read",
    "writev": "as write",
    "openat": WORKER,
    "openat2": WORKER,
    "close": "at once; a file's on a worker thread",
    "fsync": WORKER,
    "ftruncate": WORKER + "; on any kernel",
    "timeout": "a timer heap (ns; ms where epoll_pwait2 is refused)",
    "unlinkat": WORKER,
    "renameat": WORKER,
    "mkdirat": WORKER,
    "statx": WORKER,
    "splice": "pipes and sockets: " + READINESS + " (a socket's SO_SNDTIMEO, "
              "SO_RCVTIMEO end it with -EAGAIN); with a file: " + WORKER,
    "poll_add": "epoll readiness (multishot too)",
    "socket": "at once",
    "accept": READINESS + " (multishot too); leaves the listener O_NONBLOCK",
    "bind": "at once",
    "listen": "at once",
    "connect": READINESS,
    "recv": READINESS + "; a group's buffers in the kernel's order (multishot too)",
    "send": READINESS,
    "send_zc": "a copying send, then its notification",
    "recvmsg": READINESS,
    "sendmsg": READINESS,
    "shutdown": "at once",
}
