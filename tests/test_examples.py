"""The example programs as processes: echo_server's options, errors and
graceful shutdown on SIGTERM; echo_client against it."""
import errno
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "build", "echo_server")
CLIENT = os.path.join(ROOT, "build", "echo_client")


@unittest.skipUnless(os.access(SERVER, os.X_OK) and os.access(CLIENT, os.X_OK),
                     "build/echo_server and build/echo_client are built by make test")
class EchoServerProcess(unittest.TestCase):
    """The default server: multishot accept and recv on a buffer group.
    EchoServerSingleShot runs every test again against -1."""
    MODE = []

    def start(self, *args, nofile=None, env=None):
        """Starts build/echo_server on a free port; returns (process, port).
        nofile, if given, is the server's RLIMIT_NOFILE (set in the child);
        env, variables set for it (PD_ENGINE is unset unless env sets it).
        self.engines gets the engine each thread says it runs on."""
        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        penv = {k: v for k, v in os.environ.items() if k != "PD_ENGINE"}
        penv.update(env or {})
        p = subprocess.Popen([SERVER, "-p", "0", *self.MODE, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=penv,
                             preexec_fn=limit if nofile else None)
        line = self.listening = p.stdout.readline()
        m = re.search(r"listening on (\S+):(\d+) \(.*, (\d+) threads?,", line)
        if not m:
            p.kill()
            p.wait()
            self.fail(f"no listening line: {line!r} {p.stderr.read()!r}")
        self.addCleanup(self.reap, p)
        self.engines = []
        for i in range(int(m.group(3))):
            e = re.fullmatch(rf"echo_server: thread {i} runs on (\S+)\n", p.stdout.readline())
            self.assertIsNotNone(e, f"thread {i} does not say its engine")
            self.engines.append(e.group(1))
        return p, int(m.group(2))

    @staticmethod
    def reap(p):
        if p.poll() is None:
            p.kill()
            p.communicate()

    def stop(self, p, connections_left=0):
        """SIGTERM; the server must exit 0 with nothing left in flight."""
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(f"shut down; 0 ops in flight, {connections_left} connections left", out)
        self.assert_buffers_back(out)

    def assert_buffers_back(self, out):
        """Every buffer of every thread's group is back in its ring."""
        m = re.search(r"(\d+) of (\d+) buffers back in their groups", out)
        if self.MODE:
            self.assertIsNone(m, out)
        else:
            self.assertIsNotNone(m, out)
            self.assertEqual(m.group(1), m.group(2), out)

    def connect(self, port, host="127.0.0.1"):
        c = socket.create_connection((host, port), timeout=10)
        self.addCleanup(c.close)
        return c

    def read_to_eof(self, c):
        """Everything c receives up to the end of stream. A reset fails the
        test: it would mean the server discarded what it had queued."""
        data = b""
        while True:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                self.fail(f"connection reset after {len(data)} bytes")
            if not chunk:
                return data
            data += chunk

    def echo(self, c, msg):
        c.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = c.recv(len(msg) - len(got))
            self.assertTrue(chunk, f"end of stream instead of the echo of {msg!r}")
            got += chunk
        self.assertEqual(got, msg)

    def served(self, pending, settle=0.5, limit=20.0):
        """pending maps clients to the line each has sent. Waits for a first
        echo (at most `limit` seconds), then until no new echo arrived for
        `settle` seconds; returns the clients whose line came back whole."""
        sel = selectors.DefaultSelector()
        got = {}
        for c in pending:
            sel.register(c, selectors.EVENT_READ)
            got[c] = b""
        end = time.monotonic() + limit
        wait = limit
        while time.monotonic() < end:
            events = sel.select(timeout=wait)
            if not events:
                break
            wait = settle
            for key, _ in events:
                chunk = key.fileobj.recv(64)
                self.assertTrue(chunk, "end of stream instead of an echo")
                got[key.fileobj] += chunk
        sel.close()
        for c, g in got.items():
            self.assertTrue(pending[c].startswith(g), f"{g!r} is not an echo of {pending[c]!r}")
        return [c for c, g in got.items() if g == pending[c]]

    def test_sigterm_says_bye_to_every_client_and_exits_0(self):
        p, port = self.start()
        clients = []
        for i in range(20):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"ping %d\n" % i)
            clients.append(c)
        for i, c in enumerate(clients):
            want = b"ping %d\n" % i
            got = b""
            while len(got) < len(want):
                got += c.recv(64)
            self.assertEqual(got, want)
        p.send_signal(signal.SIGTERM)
        for c in clients:
            rest = b""
            while True:
                chunk = c.recv(64)
                if not chunk:
                    break
                rest += chunk
            self.assertEqual(rest, b"bye\n")
            c.close()
        out, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("signal 15: shut down; 0 ops in flight, 0 connections left", out)
        self.assert_buffers_back(out)

    def test_client_load_and_sigint(self):
        p, port = self.start()
        r = subprocess.run([CLIENT, "-p", str(port), "-c", "8", "-n", "200", "-s", "100",
                            "-t", "5000"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1600 round trips of 100 bytes over 8 connections", r.stdout)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("signal 2: shut down; 0 ops in flight", out)

    def test_port_in_use_is_a_clear_error(self):
        p, port = self.start()
        try:
            r = subprocess.run([SERVER, "-p", str(port)], capture_output=True, text=True,
                               timeout=10)
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stderr.strip(),
                             f"echo_server: cannot bind 127.0.0.1:{port}: Address already in use")
        finally:
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=10)

    def test_bad_arguments(self):
        for args, msg in [(["-p", "70000"], "echo_server: bad port '70000' (0-65535)"),
                          (["-a", "nowhere"],
                           "echo_server: bad address 'nowhere' (numeric IPv4 or IPv6)"),
                          (["-a", "::1::"],
                           "echo_server: bad address '::1::' (numeric IPv4 or IPv6)"),
                          (["-m", "0"], "echo_server: bad connection count '0'"),
                          (["-i", "-1"],
                           "echo_server: bad idle time '-1' (milliseconds, 0: never)"),
                          (["-b", "3"], "echo_server: bad buffer count '3' (a power of two, "
                           "1-32768)"),
                          (["-b", "65536"], "echo_server: bad buffer count '65536' (a power "
                           "of two, 1-32768)"),
                          (["-s", "100"], "echo_server: bad buffer size '100' (a power of "
                           "two, 64-1048576 bytes)"),
                          (["-s", "32"], "echo_server: bad buffer size '32' (a power of "
                           "two, 64-1048576 bytes)"),
                          (["-e", "kqueue"],
                           "echo_server: bad engine 'kqueue' (auto, uring, epoll or sim)")]:
            r = subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(r.stderr.strip(), msg)

    def test_each_thread_says_its_engine(self):
        """-e chooses the engine and each thread says which it runs on;
        under auto (no -e) PD_ENGINE chooses; -e wins over PD_ENGINE."""
        p, port = self.start("-t", "2", "-e", "epoll")
        self.assertEqual(self.engines, ["epoll", "epoll"])
        self.echo(self.connect(port), b"over epoll\n")
        self.stop(p, connections_left=0)
        p, port = self.start(env={"PD_ENGINE": "epoll"})
        self.assertEqual(self.engines, ["epoll"])
        self.echo(self.connect(port), b"chosen by PD_ENGINE\n")
        self.stop(p)
        # Where io_uring is switched off, -e uring is a clear error; else io_uring.
        p = subprocess.Popen([SERVER, "-p", "0", *self.MODE, "-e", "uring"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PD_ENGINE="epoll"))
        self.addCleanup(self.reap, p)
        if p.stdout.readline() == "":
            out, err = p.communicate(timeout=10)
            self.assertEqual(p.returncode, 1, err)
            self.assertRegex(err, r"echo_server: thread 0: cannot make its runtime: "
                             r"(Function not implemented|Operation not permitted)")
        else:
            self.assertEqual(p.stdout.readline(), "echo_server: thread 0 runs on io_uring\n")
            self.stop(p)

    def test_runs_on_the_simulator(self):
        """-e sim: the deterministic simulator is an engine like the others
        (the clients here are another process, so the order is theirs)."""
        p, port = self.start("-e", "sim")
        self.assertEqual(self.engines, ["sim"])
        self.echo(self.connect(port), b"over the simulator\n")
        self.stop(p)

    def test_out_of_descriptors_pauses_accepting_then_resumes(self):
        # 40 descriptors: room for about 30 connections, and 60 connect.
        p, port = self.start(nofile=40)
        pending = {}
        for i in range(60):
            c = self.connect(port)
            pending[c] = b"ping %d\n" % i
            c.sendall(pending[c])
        first = self.served(pending)
        self.assertGreater(len(first), 0)
        self.assertLess(len(first), len(pending), "EMFILE was never reached")
        # Those served leave: the others are served in their turn, until
        # everyone was, and a new client as well.
        rounds = 0
        while True:
            for c in first:
                del pending[c]
                c.close()
            if not pending:
                break
            rounds += 1
            self.assertLess(rounds, 20, f"{len(pending)} clients never served")
            first = self.served(pending)
            self.assertGreater(len(first), 0, f"{len(pending)} clients never served")
        late = self.connect(port)
        self.echo(late, b"late\n")
        # Shutdown is graceful for the one left, and exits 0.
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.read_to_eof(late), b"bye\n")
        late.close()
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("0 ops in flight, 0 connections left", out)
        self.assert_buffers_back(out)

    def test_idle_connection_is_closed_gracefully_others_unaffected(self):
        p, port = self.start("-i", "1000")
        silent = self.connect(port)
        active = self.connect(port)
        self.echo(silent, b"hello\n")
        # The active client keeps talking (every 50 ms: far less than the
        # idle time even on a loaded machine) well past the idle time.
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 2.2:
            self.echo(active, b"tick %d\n" % n)
            n += 1
            time.sleep(0.05)
        # The silent one was told, then saw the end of stream; no reset.
        self.assertEqual(self.read_to_eof(silent), b"bye\n")
        self.echo(active, b"still here\n")
        self.stop(p)

    def test_idle_timeout_frees_slots_held_by_silent_clients(self):
        p, port = self.start("-i", "200", "-m", "2")
        silent = [self.connect(port) for _ in range(2)]
        for c in silent:
            self.echo(c, b"x")
        waiting = self.connect(port)
        # Served once an idle connection is closed; the silent ones get their
        # goodbye and then the end of stream.
        self.echo(waiting, b"my turn\n")
        for c in silent:
            self.assertEqual(self.read_to_eof(c), b"bye\n")
        self.stop(p, connections_left=0)

    def test_idle_timeout_zero_never_closes(self):
        p, port = self.start("-i", "0")
        c = self.connect(port)
        self.echo(c, b"a")
        c.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            c.recv(1)
        c.settimeout(10)
        self.echo(c, b"b")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.read_to_eof(c), b"bye\n")
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)

    def test_clients_that_stopped_reading_get_everything_then_eof(self):
        """Clients send until the server is blocked on them and stop reading;
        the server shuts down and exits; only then do they read. Each must see
        the echo of what it sent (a prefix of it), the goodbye if it fit, and
        the end of stream: never a reset, which would have discarded the
        data queued for it."""
        p, port = self.start()
        pattern = bytes(range(ord("A"), ord("Z") + 1)) * 2521  # 65546 bytes
        clients, sent = [], []
        for _ in range(8):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.addCleanup(c.close)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
            c.connect(("127.0.0.1", port))
            c.setblocking(False)
            clients.append(c)
            sent.append(0)
        # Send until nothing more goes in for a while on any of them.
        idle_rounds = 0
        while idle_rounds < 3:
            progress = 0
            for i, c in enumerate(clients):
                while True:
                    off = sent[i] % len(pattern)
                    try:
                        n = c.send(pattern[off:])
                    except BlockingIOError:
                        break
                    sent[i] += n
                    progress += n
            idle_rounds = idle_rounds + 1 if progress == 0 else 0
            time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(err, "")
        for i, c in enumerate(clients):
            c.setblocking(True)
            c.settimeout(10)
            data = self.read_to_eof(c)
            body = data.rstrip(b"bye\n")
            tail = data[len(body):]
            self.assertIn(tail, [b"", b"b", b"by", b"bye", b"bye\n"], f"client {i}")
            self.assertGreater(len(body), 0, f"client {i}: nothing echoed")
            self.assertLessEqual(len(body), sent[i])
            whole = pattern * (len(body) // len(pattern) + 1)
            self.assertEqual(body, whole[:len(body)], f"client {i}: echo differs")

    def test_clients_that_never_read_cannot_starve_a_new_one(self):
        """More clients than the group has buffers (80 for -b 64) send until
        the server stops reading them, and never read. A new client is still
        echoed, not only once the idle sweep closes them a minute later.
        When they leave, the server is back to the descriptors it had, and
        it exits 0 with every buffer back in its group."""
        p, port = self.start("-b", "64")
        fds = len(os.listdir(f"/proc/{p.pid}/fd"))
        hogs = []
        for _ in range(80):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.addCleanup(c.close)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.connect(("127.0.0.1", port))
            c.setblocking(False)
            hogs.append(c)
        chunk, idle_rounds = b"x" * 65536, 0
        while idle_rounds < 3:
            progress = 0
            for c in hogs:
                try:
                    while True:
                        progress += c.send(chunk)
                except BlockingIOError:
                    pass
            idle_rounds = idle_rounds + 1 if progress == 0 else 0
            time.sleep(0.1)
        fresh = self.connect(port)
        self.echo(fresh, b"hello\n")  # fails after the socket's 10 s timeout
        for c in hogs:
            c.close()  # with unread data: a reset
        end = time.monotonic() + 30
        while len(os.listdir(f"/proc/{p.pid}/fd")) != fds + 1 and time.monotonic() < end:
            time.sleep(0.05)
        self.assertEqual(len(os.listdir(f"/proc/{p.pid}/fd")), fds + 1)
        self.echo(fresh, b"still here\n")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.read_to_eof(fresh), b"bye\n")
        fresh.close()
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("0 ops in flight, 0 connections left", out)
        self.assert_buffers_back(out)

    def test_threads_share_the_port_and_all_shut_down(self):
        """-t 4: four threads with a runtime and a listener each; SIGTERM
        shuts every one down: each client gets its goodbye, 0 in flight."""
        p, port = self.start("-t", "4")
        self.assertIn("4 threads", self.listening)
        # The main thread and four workers (on epoll, each runtime's four
        # file-op threads as well).
        per_runtime = 5 if self.engines == ["epoll"] * 4 else 1
        self.assertEqual(len(os.listdir(f"/proc/{p.pid}/task")), 1 + 4 * per_runtime)
        clients = [self.connect(port) for _ in range(32)]
        for i, c in enumerate(clients):
            self.echo(c, b"ping %d\n" % i)
        p.send_signal(signal.SIGTERM)
        for c in clients:
            self.assertEqual(self.read_to_eof(c), b"bye\n")
            c.close()  # the end of stream that ends the server's lingering close
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("shut down; 0 ops in flight, 0 connections left, "
                      "0 teardowns cut short", out)

    def test_drain_deadline_cuts_a_client_that_stopped_reading(self):
        """A client that stopped reading with its receive window full keeps
        the goodbye's send blocked; -d cuts that teardown short, and the
        server still exits 0 with nothing in flight. The other client's
        teardown ends on its own."""
        # 1500 ms: past the goodbye's own 1 s timeout, well before the end
        # of the stuck client's lingering close; ample for the quick one.
        p, port = self.start("-t", "2", "-d", "1500")
        quick = self.connect(port)
        self.echo(quick, b"hello\n")
        stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(stuck.close)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", port))
        stuck.setblocking(False)
        chunk, idle_rounds = b"x" * 65536, 0
        while idle_rounds < 3:
            try:
                while stuck.send(chunk) > 0:
                    idle_rounds = 0
            except BlockingIOError:
                pass
            idle_rounds += 1
            time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.read_to_eof(quick), b"bye\n")
        quick.close()
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("shut down; 0 ops in flight, 0 connections left, "
                      "1 teardowns cut short at the 1500 ms drain deadline", out)

    def test_bad_thread_and_drain_arguments(self):
        for args, msg in [(["-t", "0"], "echo_server: bad thread count '0' (1-256)"),
                          (["-t", "257"], "echo_server: bad thread count '257' (1-256)"),
                          (["-d", "-1"], "echo_server: bad drain time '-1' (milliseconds)"),
                          (["-d", "soon"],
                           "echo_server: bad drain time 'soon' (milliseconds)")]:
            r = subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(r.stderr.strip(), msg)

    def test_ipv6_loopback(self):
        try:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            probe.bind(("::1", 0))
            probe.close()
        except OSError as e:
            self.skipTest(f"no IPv6 loopback on this machine: {e}")
        p, port = self.start("-a", "::1")
        c = self.connect(port, host="::1")
        self.assertEqual(c.family, socket.AF_INET6)
        self.echo(c, b"over IPv6\n")
        r = subprocess.run([CLIENT, "-a", "::1", "-p", str(port), "-c", "2", "-n", "10"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("20 round trips of 64 bytes over 2 connections", r.stdout)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.read_to_eof(c), b"bye\n")
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(f"listening on [::1]:{port} ", self.listening)

    def test_client_against_nothing_fails_cleanly(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        r = subprocess.run([CLIENT, "-p", str(port), "-c", "2", "-n", "1"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("Connection refused", r.stderr)


class EchoServerSingleShot(EchoServerProcess):
    """Every test again, against the single-shot design (-1)."""
    MODE = ["-1"]


if __name__ == "__main__":
    unittest.main()
