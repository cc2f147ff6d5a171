"""make test's runner (tests/run_tests.py): what it counts, that a job that
hangs is stopped with every process it left, which job it starts next, and
that it finds every suite of the Check runner it splits into jobs."""
import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_tests  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def job(kind, out, status):
    j = run_tests.Job("k", "title", [], {}, (kind,))
    j.out, j.status = out, status
    return j


class Counts(unittest.TestCase):
    def test_unittest_summaries(self):
        ok = job("py", "...\nRan 12 tests in 1.0s\n\nOK (skipped=2)\n", 0)
        self.assertEqual(run_tests.counts(ok), (12, 0, 2))
        bad = job("py", "FE.\nRan 3 tests in 1.0s\n\nFAILED (failures=1, errors=2, "
                        "skipped=1)\n", 1)
        self.assertEqual(run_tests.counts(bad), (3, 3, 1))
        self.assertEqual(run_tests.py_failures(bad.out), (1, 2))

    def test_check_summaries(self):
        self.assertEqual(run_tests.counts(job("c", "Running suite(s): x\n25 passed, 1 failed\n",
                                              1)), (26, 1, 0))

    def test_a_job_that_failed_without_a_summary_is_a_failure(self):
        for kind in ("py", "c"):
            with self.subTest(kind=kind):
                self.assertEqual(run_tests.counts(job(kind, "Segmentation fault\n", 139))[1], 1)


class Jobs(unittest.TestCase):
    def test_a_job_that_hangs_is_stopped_with_what_it_left(self):
        pids = tempfile.mktemp(prefix="pd-run-tests-")
        self.addCleanup(lambda: os.path.exists(pids) and os.unlink(pids))
        # A child in a process group of its own, as Check makes each test.
        code = ("import os, time\n"
                "pid = os.fork()\n"
                "if pid == 0:\n"
                "    os.setpgid(0, 0)\n"
                "    time.sleep(120)\n"
                "    os._exit(0)\n"
                f"open({pids!r}, 'w').write(str(pid))\n"
                "time.sleep(120)\n")
        j = run_tests.Job("k", "hangs", [sys.executable, "-c", code], dict(os.environ), ("py",))
        with mock.patch.object(run_tests, "JOB_TIMEOUT", 2):
            run_tests.run_job(j)
        self.assertEqual(j.status, 124)
        self.assertIn("stopped after 2 s", j.out)
        with open(pids) as f:
            child = int(f.read())
        try:
            with open(f"/proc/{child}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "gone"
        self.assertIn(state, ("gone", "Z"))


def named(*keys):
    return [run_tests.Job(k, k, [], {}, ("c",)) for k in keys]


class Main(unittest.TestCase):
    def test_a_job_that_cannot_start_fails_and_the_run_ends(self):
        d = tempfile.mkdtemp(prefix="pd-run-tests-")
        times = os.path.join(d, "times.json")
        self.addCleanup(lambda: (os.path.exists(times) and os.unlink(times), os.rmdir(d)))
        jobs = [run_tests.Job("py nowhere", "nowhere", [os.path.join(d, "missing")],
                              dict(os.environ), ("py",)),
                run_tests.Job("py fine", "fine", [sys.executable, "-c", "print('Ran 1 test in "
                                                  "0.0s')"], dict(os.environ), ("py",))]
        out = io.StringIO()
        with mock.patch.object(run_tests, "py_jobs", lambda estimate: jobs), \
             mock.patch.object(run_tests, "TIMES", times), contextlib.redirect_stdout(out):
            self.assertEqual(run_tests.main(["--py"]), 1)
        self.assertIn("FAIL nowhere", out.getvalue())
        self.assertIn("ok   fine", out.getvalue())


def live_in_sessions(sids):
    """The pids of the processes, zombies aside, whose session is in sids."""
    live = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sids and fields[0] != "Z":
            live.append(int(pid))
    return live


class Signals(unittest.TestCase):
    """make test stopped by a signal (^C, a SIGTERM from make or from a CI
    runner that gives up, a terminal that hangs up) stops every job's session
    with it and exits with 128 + the signal: the jobs run in sessions of
    their own, which no signal sent to make or to its process group reaches."""
    JOBS = 3
    # A job that leaves a child in a process group of its own, as Check
    # makes each test, writes its session's id, and sleeps for an hour.
    CODE = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    os.setpgid(0, 0)\n"
            "    time.sleep(3600)\n"
            "    os._exit(0)\n"
            "with open(os.path.join(sys.argv[1], str(os.getsid(0))), 'w'):\n"
            "    pass\n"
            "time.sleep(3600)\n")
    # The runner keeps a signal ignored when it starts (nohup; a background
    # job's SIGINT); this test's may be, so its runner starts with all three
    # at their defaults.
    DRIVER = ("import os, signal, sys\n"
              "for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
              "    signal.signal(sig, signal.SIG_DFL)\n"
              "sys.path.insert(0, {tests!r})\n"
              "import run_tests\n"
              "run_tests.TIMES = os.path.join({d!r}, 'times.json')\n"
              "# Jobs that sleep: all of them start at once, whatever the CPUs.\n"
              "with open(run_tests.TIMES, 'w') as f:\n"
              "    f.write('{{' + ', '.join('\"py sleep%d\": [10, 0]' % i\n"
              "                            for i in range({n})) + '}}')\n"
              "run_tests.py_jobs = lambda estimate: [\n"
              "    run_tests.Job('py sleep%d' % i, 'sleep%d' % i,\n"
              "                  [sys.executable, '-c', {code!r}, {d!r}],\n"
              "                  run_tests.child_env(), ('py',)) for i in range({n})]\n"
              "sys.exit(run_tests.main(['--py', '-j', str({n})]))\n")

    def stop_with(self, sig):
        d = tempfile.mkdtemp(prefix="pd-run-tests-")
        sids = set()

        def clean():
            for sid in sids:
                run_tests.kill_session(sid)
            for f in os.listdir(d):
                os.unlink(os.path.join(d, f))
            os.rmdir(d)
        self.addCleanup(clean)
        driver = self.DRIVER.format(tests=os.path.join(ROOT, "tests"), d=d, code=self.CODE,
                                    n=self.JOBS)
        # The runner in a session of its own too, so that a runner that
        # leaves its jobs behind leaves them where clean() finds them.
        out = tempfile.TemporaryFile(mode="w+")
        self.addCleanup(out.close)
        runner = subprocess.Popen([sys.executable, "-c", driver], stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        sids.add(runner.pid)
        try:
            for _ in range(600):
                sids.update(int(f) for f in os.listdir(d) if f.isdigit())
                if len(sids) > self.JOBS or runner.poll() is not None:
                    break
                time.sleep(0.05)
            self.assertEqual(len(sids), self.JOBS + 1, "the jobs did not all start in 30 s")
            runner.send_signal(sig)
            status = runner.wait(timeout=60)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        jobs = sids - {runner.pid}
        for _ in range(600):
            if not live_in_sessions(jobs):
                break
            time.sleep(0.05)
        # Every process of every job is gone, long before its hour of sleep.
        self.assertEqual(live_in_sessions(jobs), [])
        self.assertEqual(status, 128 + sig)
        # It says why it stopped, and reports no job it stopped as failed.
        out.seek(0)
        text = out.read()
        self.assertIn(f"run_tests: stopped by {signal.Signals(sig).name}", text)
        self.assertNotIn("FAIL", text)
        self.assertNotIn("Traceback", text)

    def test_sigterm_stops_every_job(self):
        self.stop_with(signal.SIGTERM)

    def test_sigint_stops_every_job(self):
        self.stop_with(signal.SIGINT)

    def test_sighup_stops_every_job(self):
        self.stop_with(signal.SIGHUP)


class Schedule(unittest.TestCase):
    """Which job starts next: the slowest first, as long as the shares of a
    CPU of the jobs running (CPU time over wall time on the last run) fit
    within the machine's CPUs."""
    TIMES = {"compute a": (20.0, 19.0), "compute b": (15.0, 15.0), "sleeps": (40.0, 2.0),
             "half": (10.0, 2.5)}

    def test_the_slowest_first_while_the_cpus_are_free(self):
        queue = named("sleeps", "compute a", "compute b")
        self.assertEqual(run_tests.pick(queue, [], 8, 2, self.TIMES), 0)
        self.assertEqual(run_tests.pick(queue[1:], named("sleeps"), 8, 2, self.TIMES), 0)

    def test_a_job_that_computes_waits_for_a_cpu_and_one_that_sleeps_does_not(self):
        queue = named("compute b", "sleeps")
        running = named("compute a", "half")
        # 1.0 + 0.5 running on 2 CPUs: compute b (1.0) does not fit, sleeps (0.1) does.
        self.assertEqual(run_tests.pick(queue, running, 8, 2, self.TIMES), 1)
        self.assertIsNone(run_tests.pick(queue[:1], running, 8, 2, self.TIMES))
        self.assertEqual(run_tests.pick(queue[:1], named("compute a"), 8, 2, self.TIMES), 0)

    def test_a_job_never_seen_counts_as_one_cpu(self):
        self.assertEqual(run_tests.share(self.TIMES, "new"), 1.0)
        self.assertIsNone(run_tests.pick(named("new"), named("compute a", "compute b"), 8, 2,
                                         self.TIMES))

    def test_with_nothing_running_the_first_job_starts_whatever_its_share(self):
        self.assertEqual(run_tests.pick(named("compute a"), [], 8, 0.5, self.TIMES), 0)

    def test_no_more_jobs_than_slots(self):
        running = named(*["sleeps"] * 3)
        self.assertIsNone(run_tests.pick(named("sleeps"), running, 3, 2, self.TIMES))
        self.assertEqual(run_tests.pick(named("sleeps"), running, 4, 2, self.TIMES), 0)
        self.assertIsNone(run_tests.pick([], [], 4, 2, self.TIMES))

    def test_times_files_old_and_new_the_later_over_the_earlier(self):
        d = tempfile.mkdtemp(prefix="pd-run-tests-")
        self.addCleanup(lambda: [os.unlink(os.path.join(d, f)) for f in os.listdir(d)] and
                        os.rmdir(d))
        shipped, last = os.path.join(d, "shipped.json"), os.path.join(d, "last.json")
        with open(shipped, "w") as f:
            f.write('{"a": [10.0, 1.0], "b": [5.0, 5.0], "d": [10.0, 1.0]}')
        with open(last, "w") as f:
            f.write('{"b": 7.5, "c": [2.0, null], "d": 20.0}')
        times = run_tests.load_times(shipped, last, os.path.join(d, "missing.json"))
        # A later wall time alone keeps the earlier file's CPU over wall: an
        # old runner's times file must not make every job count as a CPU.
        self.assertEqual(times, {"a": (10.0, 1.0), "b": (7.5, 7.5), "c": (2.0, None),
                                 "d": (20.0, 2.0)})
        self.assertEqual(run_tests.share(times, "a"), 0.2)  # twice 1 s of CPU in 10
        self.assertEqual(run_tests.share(times, "b"), 1.0)
        self.assertEqual(run_tests.share(times, "c"), 1.0)
        self.assertEqual(run_tests.share(times, "d"), 0.2)

    def test_the_shipped_times_name_jobs_of_this_tree(self):
        """tests/test-times.json orders a fresh clone's first run: each of
        its entries is [wall, CPU], and it knows the long jobs."""
        times = run_tests.load_times(run_tests.SHIPPED_TIMES)
        self.assertGreater(len(times), 100)
        for key, (wall, cpu) in times.items():
            self.assertTrue(wall >= 0 and cpu is not None and cpu >= 0, key)
        for key in ("c build/check_polldrop httpd", "c epoll build/check_polldrop_asan httpd",
                    "py test_seccomp", "py test_examples.EchoServerProcess"):
            self.assertIn(key, times)


@unittest.skipUnless(os.access(os.path.join(ROOT, "build", "check_polldrop_asan"), os.X_OK),
                     "make test builds build/check_polldrop_asan")
class Suites(unittest.TestCase):
    def test_every_suite_of_the_checked_runner_is_found(self):
        names = run_tests.check_suites(os.path.join(ROOT, "build", "check_polldrop_asan"),
                                       run_tests.SAN_ENV)
        with open(os.path.join(ROOT, "tests", "check_main.c")) as f:
            listed = f.read().count("    pd_suite_")
        self.assertEqual(len(names), listed)
        self.assertEqual(len(set(names)), len(names))
        self.assertIn("httpd", names)
        self.assertIn("misuse caught by the checked build", names)


class OwnEngine(unittest.TestCase):
    """The tcases tagged own-engine run in the sanitized run on io_uring and
    are left out of its run on epoll: that is right only while none of
    their tests makes a runtime whose engine PD_ENGINE picks."""

    # What makes a runtime on the engine PD_ENGINE picks: the tests'
    # helpers and the harness's runs (its explorations pick the simulator),
    # pd_runtime_new without a config, a config that names no engine.
    PICKED = re.compile(r"\b(?:pd_test_rt|pd_test_skip_on_sim|pd_harness_run"
                        r"(?:_spawning|_with)?)\s*\(|\bpd_runtime_new\s*\([^;]*,\s*NULL\s*\)"
                        r"|\bpd_config\s+\w+\s*=\s*\{(?![^}]*\.engine\b)[^}]*\}")

    def test_only_the_epoll_run_leaves_them_out(self):
        runs = {label: env for label, _, env in run_tests.RUNNERS}
        self.assertEqual(runs["epoll build/check_polldrop_asan"].get("CK_EXCLUDE_TAGS"),
                         "own-engine")
        for label, env in runs.items():
            if label != "epoll build/check_polldrop_asan":
                self.assertNotIn("own-engine", env.get("CK_EXCLUDE_TAGS", ""), label)

    def test_a_file_tagging_own_engine_picks_every_engine_itself(self):
        tagged = []
        tests = os.path.join(ROOT, "tests")
        for name in sorted(os.listdir(tests)):
            if not name.endswith(".c"):
                continue
            with open(os.path.join(tests, name)) as f:
                src = f.read()
            if not re.search(r"tcase_set_tags\(\s*\w+\s*,\s*(?:PD_TEST_OWN_ENGINE|"
                             r'"[^"]*\bown-engine\b)', src):
                continue
            tagged.append(name)
            # A test that sets PD_ENGINE itself picks the engine of what
            # it makes without a config.
            if 'setenv("PD_ENGINE"' in src:
                continue
            found = self.PICKED.search(src)
            self.assertIsNone(found, f"{name} tags a tcase own-engine, yet makes a runtime "
                              f"whose engine PD_ENGINE picks: {found and found.group(0)!r}")
        self.assertIn("test_engine_sim.c", tagged)
        self.assertIn("test_engine_epoll.c", tagged)

    def test_the_pattern_finds_what_it_must(self):
        for text in ("rt = pd_test_rt();", "pd_harness_run(&c, &st);",
                     "pd_runtime_new(&rt, NULL);", "pd_config cfg = { .entries = 8 };",
                     "pd_harness_run_with(&c, &o, &st);"):
            self.assertIsNotNone(self.PICKED.search(text), text)
        for text in ("pd_config cfg = { .engine = PD_ENGINE_SIM };",
                     "pd_config cfg = { .entries = 4, .engine = e };",
                     "pd_runtime_new(&rt, &cfg);", "pd_harness_explore(&c, 7, &st);"):
            self.assertIsNone(self.PICKED.search(text), text)


if __name__ == "__main__":
    unittest.main()
