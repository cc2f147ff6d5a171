"""build/httpd's command line, as a process: flags, the listening line,
a request, and the exit status after SIGINT and SIGTERM. The server's
behaviour is tested by the Check suite `httpd` (tests/test_httpd.c)."""
import http.client
import os
import re
import signal
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HTTPD = os.path.join(ROOT, "build", "httpd")


class HttpdCommandLine(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pd-httpd-py-")
        with open(os.path.join(self.dir, "index.html"), "w") as f:
            f.write("<p>hi</p>\n")

    def tearDown(self):
        os.unlink(os.path.join(self.dir, "index.html"))
        os.rmdir(self.dir)

    def start(self, *args, env=None):
        """Starts httpd (PD_ENGINE unset unless env sets it); returns it and
        the match of its listening line, or (None, its stderr) if it exited
        first. The lines before the listening line go to self.before."""
        penv = {k: v for k, v in os.environ.items() if k != "PD_ENGINE"}
        penv.update(env or {})
        p = subprocess.Popen([HTTPD, "-p", "0", "-r", self.dir, *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=penv)
        self.before = []
        # A note on the descriptor limit may come first, and threads saying
        # their engine.
        for line in p.stdout:
            m = re.match(r"httpd: listening on (\S+) port (\d+), root (.*), (\d+) threads?$",
                         line.strip())
            if m:
                return p, m
            self.before.append(line)
        err = p.stderr.read()
        p.communicate(timeout=30)
        return None, err

    def stop(self, p, sig):
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        return p.returncode, out, err

    def test_serves_then_exits_0_on_each_signal(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            p, m = self.start("-t", "2")
            self.assertIsNotNone(p, m)
            self.assertEqual(m.group(4), "2")
            c = http.client.HTTPConnection("127.0.0.1", int(m.group(2)), timeout=20)
            c.request("GET", "/")
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"<p>hi</p>\n"))
            self.assertEqual(r.getheader("Content-Type"), "text/html")
            c.close()
            code, out, err = self.stop(p, sig)
            self.assertEqual((code, err), (0, ""))
            self.assertEqual(len(re.findall(r"0 ops in flight, 0 connections left", out)), 2,
                             out)

    def engines(self, p, n):
        """The engine each of n threads says it runs on, in thread order."""
        lines = self.before + [p.stdout.readline() for _ in range(n - len(self.before))]
        found = {}
        for line in lines:
            e = re.fullmatch(r"httpd: thread (\d+) runs on (\S+)\n", line)
            self.assertIsNotNone(e, line)
            found[int(e.group(1))] = e.group(2)
        return [found.get(i) for i in range(n)]

    def test_each_thread_says_its_engine(self):
        """-e chooses the engine (PD_ENGINE under auto); each thread says
        which it runs on, and the server serves on it."""
        for args, env in ((["-e", "epoll"], None), ([], {"PD_ENGINE": "epoll"})):
            p, m = self.start("-t", "2", *args, env=env)
            self.assertIsNotNone(p, m)
            self.assertEqual(self.engines(p, 2), ["epoll", "epoll"])
            c = http.client.HTTPConnection("127.0.0.1", int(m.group(2)), timeout=20)
            c.request("GET", "/index.html")
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"<p>hi</p>\n"))
            c.close()
            code, out, err = self.stop(p, signal.SIGTERM)
            self.assertEqual((code, err), (0, ""))
        # The simulator serves too (its clients are this process, so the
        # order is theirs; design.md, "The simulator").
        p, m = self.start("-e", "sim")
        self.assertIsNotNone(p, m)
        self.assertEqual(self.engines(p, 1), ["sim"])
        c = http.client.HTTPConnection("127.0.0.1", int(m.group(2)), timeout=20)
        c.request("GET", "/index.html")
        r = c.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"<p>hi</p>\n"))
        c.close()
        code, out, err = self.stop(p, signal.SIGTERM)
        self.assertEqual((code, err), (0, ""))

    def test_ipv6(self):
        p, m = self.start("-a", "::1")
        if p is None:
            self.skipTest(f"no IPv6 loopback here: {m.strip()}")
        c = http.client.HTTPConnection("::1", int(m.group(2)), timeout=20)
        c.request("HEAD", "/index.html")
        r = c.getresponse()
        self.assertEqual((r.status, r.getheader("Content-Length")), (200, "10"))
        c.close()
        self.assertEqual(self.stop(p, signal.SIGTERM)[0], 0)

    def test_each_large_body_mode_serves_every_byte(self):
        """-L copy, splice and sendfile each serve a file of 1 MiB + 3
        bytes, twice on one connection, every byte right."""
        data = bytes((i * 7 + i // 251) & 0xff for i in range((1 << 20) + 3))
        path = os.path.join(self.dir, "large.bin")
        with open(path, "wb") as f:
            f.write(data)
        try:
            for mode in ("copy", "splice", "sendfile"):
                p, m = self.start("-L", mode)
                self.assertIsNotNone(p, m)
                c = http.client.HTTPConnection("127.0.0.1", int(m.group(2)), timeout=20)
                for _ in range(2):
                    c.request("GET", "/large.bin")
                    r = c.getresponse()
                    self.assertEqual((r.status, r.read()), (200, data), mode)
                c.close()
                self.assertEqual(self.stop(p, signal.SIGTERM)[0], 0, mode)
        finally:
            os.unlink(path)

    def test_quiet_prints_nothing(self):
        p = subprocess.Popen([HTTPD, "-q", "-p", "0", "-r", self.dir],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Nothing is printed, so there is no line to wait for: a signal
        # that arrives before the mask is set would kill it, hence the
        # check below accepts only a clean exit or death by that signal.
        try:
            out, err = p.communicate(timeout=0.5)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=30)
        self.assertIn(p.returncode, (0, -signal.SIGTERM))
        self.assertEqual((out, err), ("", ""))

    def test_bad_flags(self):
        for args, msg in ((["-p", "70000"], "httpd: bad value '70000' for -p (0-65535)\n"),
                          (["-t", "0"], "httpd: bad value '0' for -t (1-1024)\n"),
                          (["-k", "soon"], "httpd: bad value 'soon' for -k (1-2147483647)\n"),
                          (["-S", "0"], "httpd: bad value '0' for -S (1-2147483647)\n"),
                          (["-a", "nowhere"], "httpd: bad address 'nowhere' (IPv4 or IPv6)\n"),
                          (["-T", "nosuch"],
                           "httpd: bad value 'nosuch' for -T: No such file or directory\n"),
                          (["-e", "kqueue"],
                           "httpd: bad value 'kqueue' for -e (auto, uring, epoll or sim)\n"),
                          (["-r", "/nonexistent/pd"],
                           "httpd: root '/nonexistent/pd': No such file or directory\n")):
            r = subprocess.run([HTTPD, "-p", "0", *args], capture_output=True, text=True,
                               timeout=30)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertEqual(r.stderr, msg, args)
        r = subprocess.run([HTTPD, "extra"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith("usage: httpd "), r.stderr)


if __name__ == "__main__":
    unittest.main()
