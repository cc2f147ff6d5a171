"""The example programs as processes: echo_server's options, errors and
graceful shutdown on SIGTERM; echo_client against it."""
import os
import re
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
    def start(self, *args):
        p = subprocess.Popen([SERVER, "-p", "0", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            p.kill()
            p.wait()
            self.fail(f"no listening line: {line!r} {p.stderr.read()!r}")
        return p, int(m.group(1))

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
                          (["-a", "nowhere"], "echo_server: bad IPv4 address 'nowhere'"),
                          (["-m", "0"], "echo_server: bad connection count '0'")]:
            r = subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(r.stderr.strip(), msg)

    def test_client_against_nothing_fails_cleanly(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        r = subprocess.run([CLIENT, "-p", str(port), "-c", "2", "-n", "1"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("Connection refused", r.stderr)


if __name__ == "__main__":
    unittest.main()
