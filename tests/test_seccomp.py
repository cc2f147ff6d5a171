"""Where a seccomp filter switches io_uring off, as a container's default
profile does, polldrop's auto engine falls back to epoll, says so, and
serves.

build/seccomp_run -e ERRNO makes io_uring_setup, io_uring_enter and
io_uring_register fail with ERRNO: ENOSYS (Podman's profile, a kernel
without io_uring) or EPERM (Docker's and containerd's, and
kernel.io_uring_disabled). tests/tools/oci_seccomp.py loads a container
runtime's real profile: Podman's default, /usr/share/containers/seccomp.json
(Debian's golang-github-containers-common), with libseccomp's Python module
(python3-seccomp, for /usr/bin/python3); scripts/deps.sh installs both.
"""
import http.client
import os
import re
import signal
import socket
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
SECCOMP_RUN = os.path.join(BUILD, "seccomp_run")
OCI = ["/usr/bin/python3", os.path.join(ROOT, "tests", "tools", "oci_seccomp.py")]
PODMAN = "/usr/share/containers/seccomp.json"
ERRNOS = {"ENOSYS": "Function not implemented", "EPERM": "Operation not permitted"}


def env_auto():
    """The environment without PD_ENGINE: the engine is auto's choice."""
    return {k: v for k, v in os.environ.items() if k != "PD_ENGINE"}


def filters():
    """(name, command prefix, the strerror io_uring_setup gets) of each
    filter: ENOSYS, EPERM, and Podman's real profile (ENOSYS by default)."""
    out = [(e, [SECCOMP_RUN, "-e", e], msg) for e, msg in ERRNOS.items()]
    out.append(("podman", OCI + [PODMAN], ERRNOS["ENOSYS"]))
    return out


class UnderSeccomp(unittest.TestCase):
    def setUp(self):
        for path in (SECCOMP_RUN, os.path.join(BUILD, "echo_server"),
                     os.path.join(BUILD, "httpd"), os.path.join(BUILD, "check_polldrop")):
            if not os.access(path, os.X_OK):
                self.fail(f"{path} is not built (make test builds it)")
        self.assertTrue(os.path.exists(PODMAN),
                        f"{PODMAN} is missing: scripts/deps.sh installs "
                        "golang-github-containers-common")
        r = subprocess.run(OCI[:1] + ["-c", "import seccomp"], capture_output=True)
        self.assertEqual(r.returncode, 0, "python3-seccomp is missing: scripts/deps.sh "
                         "installs it")

    def popen(self, prefix, *cmd):
        p = subprocess.Popen(prefix + list(cmd), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env_auto())
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.communicate()))
        return p

    def test_the_runtime_falls_back_and_the_runner_says_so(self):
        """pd_runtime_new's auto gives an epoll runtime (pd_runtime_engine
        says "epoll"): the Check runner's engine suite and its banner."""
        for name, prefix, why in filters():
            with self.subTest(filter=name):
                r = subprocess.run(prefix + [os.path.join(BUILD, "check_polldrop")],
                                   env=dict(env_auto(), CK_RUN_SUITE="engine"),
                                   capture_output=True, text=True, timeout=300)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn(f"polldrop: io_uring is not available here ({why}): the C "
                              "suites run on the epoll engine", r.stderr)
                self.assertRegex(r.stdout, r"\nepoll: [1-9]\d* passed, 0 failed\n")

    def test_echo_server_echoes(self):
        for name, prefix, why in filters():
            with self.subTest(filter=name):
                p = self.popen(prefix, os.path.join(BUILD, "echo_server"), "-p", "0", "-t", "2")
                m = re.search(r"listening on 127\.0\.0\.1:(\d+) ", p.stdout.readline())
                self.assertIsNotNone(m, p.stderr.read() if p.poll() is not None else "")
                self.assertEqual([p.stdout.readline() for _ in range(2)],
                                 ["echo_server: thread 0 runs on epoll\n",
                                  "echo_server: thread 1 runs on epoll\n"])
                for i in range(4):
                    with socket.create_connection(("127.0.0.1", int(m.group(1))),
                                                  timeout=10) as c:
                        msg = b"under %s, %d\n" % (name.encode(), i)
                        c.sendall(msg)
                        got = b""
                        while len(got) < len(msg):
                            chunk = c.recv(64)
                            self.assertTrue(chunk)
                            got += chunk
                        self.assertEqual(got, msg)
                p.send_signal(signal.SIGTERM)
                out, err = p.communicate(timeout=30)
                self.assertEqual(p.returncode, 0, err)
                self.assertIn("0 ops in flight, 0 connections left", out)
                # Asked for io_uring itself, it says why it cannot have it.
                r = subprocess.run(prefix + [os.path.join(BUILD, "echo_server"), "-p", "0",
                                             "-e", "uring"],
                                   capture_output=True, text=True, timeout=30, env=env_auto())
                self.assertEqual(r.returncode, 1)
                self.assertIn(f"echo_server: thread 0: cannot make its runtime: {why}",
                              r.stderr)

    def test_httpd_serves(self):
        root = tempfile.mkdtemp(prefix="pd-seccomp-")
        self.addCleanup(os.rmdir, root)
        body = os.urandom(200000)  # large enough for a splice (64 KiB or more)
        with open(os.path.join(root, "f.bin"), "wb") as f:
            f.write(body)
        self.addCleanup(os.unlink, os.path.join(root, "f.bin"))
        for name, prefix, why in filters():
            with self.subTest(filter=name):
                p = self.popen(prefix, os.path.join(BUILD, "httpd"), "-p", "0", "-t", "2",
                               "-r", root)
                engines, port = [], None
                while port is None or len(engines) < 2:
                    line = p.stdout.readline()
                    self.assertTrue(line, p.stderr.read() if p.poll() is not None else "")
                    m = re.match(r"httpd: listening on \S+ port (\d+)", line)
                    if m:
                        port = int(m.group(1))
                    e = re.match(r"httpd: thread \d runs on (\S+)$", line)
                    if e:
                        engines.append(e.group(1))
                self.assertEqual(engines, ["epoll", "epoll"])
                for _ in range(3):
                    self.get_then_missing(port, body, 1)
                p.send_signal(signal.SIGTERM)
                out, err = p.communicate(timeout=30)
                self.assertEqual((p.returncode, err), (0, ""))
                self.assertEqual(len(re.findall("0 ops in flight, 0 connections left", out)), 2)

    def get_then_missing(self, port, body, n):
        """On one connection to port: GET /f.bin n times, each answered 200
        with body, then a missing file, answered 404."""
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        for _ in range(n):
            c.request("GET", "/f.bin")
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, body))
        c.request("GET", "/missing")
        r = c.getresponse()
        r.read()
        self.assertEqual(r.status, 404)
        c.close()

    def test_httpd_copies_a_large_body_that_cannot_be_spliced(self):
        """A file system that cannot splice (splice(2) or sendfile(2)
        answering EINVAL, as a seccomp filter makes them here) costs a
        large body its zero-copy path, not its connection: httpd reads and
        sends it instead, every byte, twice on one connection, and then
        serves the next request."""
        root = tempfile.mkdtemp(prefix="pd-seccomp-")
        self.addCleanup(os.rmdir, root)
        body = bytes((i * 7 + i // 251) & 0xff for i in range((1 << 20) + 17))
        with open(os.path.join(root, "f.bin"), "wb") as f:
            f.write(body)
        self.addCleanup(os.unlink, os.path.join(root, "f.bin"))
        for mode, call in (("splice", "splice"), ("sendfile", "sendfile")):
            with self.subTest(mode=mode):
                p = self.popen([SECCOMP_RUN, "-e", "EINVAL", "-c", call],
                               os.path.join(BUILD, "httpd"), "-p", "0", "-e", "uring",
                               "-L", mode, "-r", root)
                port = None
                while port is None:
                    line = p.stdout.readline()
                    self.assertTrue(line, p.stderr.read() if p.poll() is not None else "")
                    m = re.match(r"httpd: listening on \S+ port (\d+)", line)
                    if m:
                        port = int(m.group(1))
                self.get_then_missing(port, body, 2)
                p.send_signal(signal.SIGTERM)
                out, err = p.communicate(timeout=30)
                self.assertEqual((p.returncode, err), (0, ""))

    def test_httpd_suite_under_podmans_profile(self):
        """Every test of httpd's own Check suite (every status, traversal,
        slowloris, send deadlines, drain) under Podman's default profile."""
        r = subprocess.run(OCI + [PODMAN, os.path.join(BUILD, "check_polldrop")],
                           env=dict(env_auto(), CK_RUN_SUITE="httpd"), capture_output=True,
                           text=True, timeout=900)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        self.assertIn("the C suites run on the epoll engine", r.stderr)
        self.assertRegex(r.stdout, r"\nepoll: [1-9]\d* passed, 0 failed\n")


if __name__ == "__main__":
    unittest.main()
