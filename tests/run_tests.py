"""make test: every test, side by side.

Runs the Python tests and both Check runners (build/check_polldrop and the
ASan+UBSan+PD_CHECKED build/check_polldrop_asan) as many jobs at once: one
job per Check suite of each runner (CK_RUN_SUITE), one per Python test
module, and one per class of the slow modules. Most tests wait on the
kernel, on timers or on child processes rather than compute, so running
several at a time on a few cores shortens the run without changing any
test. Each job's output is captured and printed whole when it ends: a line
for a job that passed, its whole output for one that failed (with -v, for
every job). The run ends with the unittest summary of the Python tests
(`Ran N tests`, `OK` or `FAILED (...)`), a `N passed, N failed` line for
each Check runner and one for everything; the exit status is 1 if any job
failed, timed out or crashed. SIGINT, SIGTERM or SIGHUP stops every job's
session (no signal sent to make reaches them) and exits with 128 + the
signal.

The slowest jobs start first, by the wall time each took on the last run
(build/test-times.json) or, on a fresh clone, by tests/test-times.json (a
copy of an idle machine's build/test-times.json). A job starts when a
slot is free and the CPU its start would add fits: each job is counted
at twice the share of a CPU it used on the last run (its CPU time over its
wall time, which a loaded machine halves; one CPU when unknown), and the
jobs running may use at most one CPU per CPU of the machine, so that jobs that sleep on timers and peers fill
the time of the ones that compute without slowing them down.

Usage: tests/run_tests.py [-v] [-j JOBS] [--py] [--c]   (both by default)
  -j JOBS  at most how many jobs at once (default: PD_TEST_JOBS, or 5 per CPU)
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
TIMES = os.path.join(ROOT, "build", "test-times.json")
# The times of a fresh clone's first run: [wall, CPU] seconds per job key.
SHIPPED_TIMES = os.path.join(TESTS, "test-times.json")
# A job still running after this long is stopped and fails (Check's own
# per-test timeouts are at most 300 s).
JOB_TIMEOUT = 900
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
# Seeds the simulator explores each cancel-point case with in make test
# (make explore SEEDS=N runs more): PD_EXPLORE_SEEDS, or 2.
EXPLORE_SEEDS = os.environ.get("PD_EXPLORE_SEEDS", "2")
# The sanitized runner explores them too, for PD_EXPLORE_SEEDS_ASAN seeds (1).
EXPLORE_SEEDS_ASAN = os.environ.get("PD_EXPLORE_SEEDS_ASAN", "1")
# The whole suite once more with every runtime on the simulator, without
# faults (the tests assert outcomes); the few tests that need a real kernel
# on the real clock say so and skip there (make test-c-sim).
SIM_ENV = {"PD_ENGINE": "sim", "PD_SIM_FAULTS": "0"}
# The Check tag of the tcases whose tests pick every engine themselves.
OWN_ENGINE = "own-engine"
# Each Check run: its label, the runner and its environment. The sanitized
# runner runs a second time on the epoll engine (design.md, "Engines"),
# without the tcases tagged own-engine (tests/testutil.h,
# PD_TEST_OWN_ENGINE): they choose their engines themselves, so that run
# would repeat the first test for test; both
# run their cancel-point cases (the tcases tagged "harness": every library
# spec, echo's and httpd's futures) once more, explored under the simulator
# (docs/harness.md, "Exploring"); the plain one runs whole on the simulator
# too.
RUNNERS = [("build/check_polldrop", "build/check_polldrop", {}),
           ("build/check_polldrop_asan", "build/check_polldrop_asan", SAN_ENV),
           ("epoll build/check_polldrop_asan", "build/check_polldrop_asan",
            dict(SAN_ENV, PD_ENGINE="epoll", CK_EXCLUDE_TAGS=OWN_ENGINE)),
           ("explore build/check_polldrop", "build/check_polldrop",
            {"PD_HARNESS_SEEDS": EXPLORE_SEEDS, "CK_INCLUDE_TAGS": "harness"}),
           ("explore build/check_polldrop_asan", "build/check_polldrop_asan",
            dict(SAN_ENV, PD_HARNESS_SEEDS=EXPLORE_SEEDS_ASAN, CK_INCLUDE_TAGS="harness")),
           ("sim build/check_polldrop", "build/check_polldrop", SIM_ENV)]
# Seconds each slow job takes on an idle two-core machine, for the order of
# a job neither times file knows; any job not named here is estimated at
# one second. A class (or a module) expected to take SPLIT seconds or more
# runs alone.
ESTIMATE = {
    "py test_fuzz.FuzzSlice": 40, "py test_install.FreshClone": 25,
    "py test_install.Install": 20, "py test_examples.EchoServerProcess": 15,
    "py test_examples.EchoServerSingleShot": 15, "py test_gen.Hostile": 6,
    "py test_gen.Collisions": 5, "py test_gen.CommandLine": 5,
    "c build/check_polldrop echo server": 10, "c build/check_polldrop_asan echo server": 12,
    "c build/check_polldrop cancel at every suspension point": 8,
    "c build/check_polldrop_asan cancel at every suspension point": 8,
    "c build/check_polldrop invariant 8: buffers, multishot at every completion": 6,
    "c build/check_polldrop_asan invariant 8: buffers, multishot at every completion": 5,
    "c build/check_polldrop httpd": 4, "c build/check_polldrop_asan httpd": 5,
}
SPLIT = 5


def load_times(*paths):
    """{job key: (wall seconds, CPU seconds or None)} of the times files
    at paths, the later ones over the earlier. A file of an older runner
    gives the wall time alone: the job keeps the CPU over wall an earlier
    file gave it, so that such a file does not count every job as a CPU."""
    times = {}
    for path in paths:
        try:
            with open(path) as f:
                got = json.load(f)
        except (OSError, ValueError):
            continue
        for key, v in got.items():
            if isinstance(v, (int, float)):
                wall, cpu = float(v), None
            elif isinstance(v, list) and len(v) == 2:
                wall, cpu = float(v[0]), None if v[1] is None else float(v[1])
            else:
                continue
            old_wall, old_cpu = times.get(key, (0.0, None))
            if cpu is None and old_cpu is not None and old_wall > 0:
                cpu = wall * old_cpu / old_wall
            times[key] = (wall, cpu)
    return times


# A job's share of a CPU is counted at this many times its CPU time over
# its wall time on the last run: on a loaded machine (the last run's, or
# the one tests/test-times.json was measured on) a job that computes gets
# half a CPU or less and looks like one that sleeps half the time.
SHARE_FACTOR = 2.0


def share(times, key):
    """The share of a CPU counted for job key: SHARE_FACTOR times its CPU
    time over its wall time on its last run, at most one (a job that ran
    threads on both CPUs still takes at least one); one when unknown."""
    wall, cpu = times.get(key, (0.0, None))
    if cpu is None or wall <= 0:
        return 1.0
    return min(1.0, SHARE_FACTOR * cpu / wall)


def pick(queue, running, slots, cpus, times):
    """The index in queue (slowest first) of the job to start now, or None
    to wait for one to end: the first job whose share of a CPU fits beside
    the shares of the jobs running, within cpus; with nothing running, the
    first job whatever its share."""
    if not queue or len(running) >= slots:
        return None
    used = sum(share(times, j.key) for j in running)
    for i, job in enumerate(queue):
        if not running or used + share(times, job.key) <= cpus + 1e-9:
            return i
    return None


class Job:
    def __init__(self, key, title, argv, env, kind):
        self.key, self.title, self.argv, self.env, self.kind = key, title, argv, env, kind
        self.status = None
        self.out = ""
        self.seconds = 0.0
        # CPU seconds (user + system) of the job and every process it waited for.
        self.cpu = 0.0


def child_env(extra=None):
    """The environment of every job: the caller's, without the variables of
    the make that runs us (a make a test starts is a make of its own)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    env.update(extra or {})
    return env


def kill_session(sid):
    """Stops every process left in session sid (a job runs in a session of
    its own): Check puts each test in a process group of its own, and a
    test that hangs outlives its runner; the session id is the one thing
    they all keep. A process may fork while the others are being killed:
    scan again until none is left."""
    for _ in range(100):
        found = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                # A zombie is dead already: its parent (or init) reaps it.
                if int(fields[3]) == sid and fields[0] != "Z":
                    os.kill(int(pid), signal.SIGKILL)
                    found = True
            except (OSError, ValueError, IndexError):
                pass
        if not found:
            return
        time.sleep(0.01)


def check_suites(path, env, cwd=ROOT):
    """The names of the suites the Check runner at path runs, in its order.
    Check prints each suite's name as it starts one; a tag no test has runs
    none."""
    env = child_env(dict(env, CK_INCLUDE_TAGS="pd-list-suites-only", CK_VERBOSITY="normal"))
    for k in ("CK_RUN_SUITE", "CK_RUN_CASE", "CK_EXCLUDE_TAGS"):
        env.pop(k, None)
    r = subprocess.run([path], cwd=cwd, text=True, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120)
    names = []
    for line in r.stdout.splitlines():
        if line.startswith("Running suite(s): "):
            names.append(line[len("Running suite(s): "):])
        elif line.startswith(" ") and names:
            names.append(line[1:])
        elif names:
            break
    return names


def check_jobs(estimate):
    jobs = []
    for label, binary, env in RUNNERS:
        env = dict(env, CK_VERBOSITY=os.environ.get("CK_VERBOSITY", "normal"))
        names = check_suites(os.path.join(ROOT, binary), env)
        if os.environ.get("CK_RUN_SUITE"):
            names = [n for n in names if n == os.environ["CK_RUN_SUITE"]]
        if not names:
            # No io_uring (or a runner that does not start): run it whole,
            # to report what it says and how it exits.
            jobs.append(Job(f"c {label}", label, [os.path.join(ROOT, binary)],
                            child_env(env), ("c", label)))
        for name in names:
            jobs.append(Job(f"c {label} {name}", f"{label}: {name}",
                            [os.path.join(ROOT, binary)],
                            child_env(dict(env, CK_RUN_SUITE=name)), ("c", label)))
    return jobs


def py_jobs(estimate):
    """A job per test module; a slow class gets a job of its own."""
    sys.path[:0] = [TESTS, ROOT]
    loader = unittest.TestLoader()
    env = child_env({"PYTHONPATH": os.pathsep.join([TESTS, ROOT])})
    jobs = []
    for f in sorted(os.listdir(TESTS)):
        if not (f.startswith("test_") and f.endswith(".py")):
            continue
        mod = f[:-3]
        classes = []
        for suite in loader.loadTestsFromName(mod):
            for test in suite:
                cls = type(test).__name__
                if cls == "_FailedTest":
                    classes = None   # an import error: the module's job reports it
                    break
                if cls not in classes:
                    classes.append(cls)
            if classes is None:
                break
        alone = [c for c in classes or [] if estimate(f"py {mod}.{c}") >= SPLIT]
        rest = [c for c in classes or [] if c not in alone]
        for c in alone:
            jobs.append(Job(f"py {mod}.{c}", f"{mod}.{c}",
                            [sys.executable, "-m", "unittest", f"{mod}.{c}"], env, ("py",)))
        if rest or classes is None:
            names = [mod] if not alone else [f"{mod}.{c}" for c in rest]
            jobs.append(Job(f"py {mod}", mod, [sys.executable, "-m", "unittest", *names],
                            env, ("py",)))
    return jobs


def run_job(job):
    """Runs job in a session of its own, its output in a file; whatever it
    left running is stopped with it. The job is reaped with wait4 for its
    CPU time (its own and that of every descendant it waited for); a timer
    stops its session when JOB_TIMEOUT runs out."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile(mode="w+", errors="replace") as log:
        with STARTING:
            if STOPPING.is_set():
                raise RuntimeError("the run is being stopped")
            p = subprocess.Popen(job.argv, cwd=ROOT, env=job.env, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            RUNNING.add(p)
        timed_out = threading.Event()

        def expire():
            timed_out.set()
            kill_session(p.pid)

        timer = threading.Timer(JOB_TIMEOUT, expire)
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        p.returncode = job.status = os.waitstatus_to_exitcode(status)
        job.cpu = usage.ru_utime + usage.ru_stime
        kill_session(p.pid)
        RUNNING.discard(p)
        log.seek(0)
        job.out = log.read()
    job.seconds = time.monotonic() - t0
    if timed_out.is_set():
        job.status = 124
        job.out += f"\nrun_tests: stopped after {JOB_TIMEOUT} s\n"


# The jobs running. A job is started and added here under STARTING, which
# stop_all takes to set STOPPING: once it is set no job starts, so every
# job's session that ever started is in RUNNING when stop_all kills them.
RUNNING = set()
STARTING = threading.Lock()
STOPPING = threading.Event()


class Stopped(Exception):
    """A signal that ends the run (SIGINT, SIGTERM, SIGHUP) arrived."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def stop_all():
    """Stops every job's session, and any job about to start: a job runs in
    a session of its own, out of reach of a signal sent to make's process
    group (^C) or to make, which forwards SIGTERM to us alone."""
    with STARTING:
        STOPPING.set()
    for proc in list(RUNNING):
        kill_session(proc.pid)


def py_failures(out):
    """(failures, errors) of a unittest summary; unexpected successes count
    as failures."""
    m = re.search(r"^FAILED \((.*)\)$", out, re.M)
    found = {k: int(v) for k, v in re.findall(r"(\w[\w ]*?)=(\d+)", m.group(1))} if m else {}
    return (found.get("failures", 0) + found.get("unexpected successes", 0),
            found.get("errors", 0))


def counts(job):
    """(run, failed, skipped) of a finished job, from its output; a job that
    failed without saying how many tests failed counts as one failure."""
    if job.kind[0] == "py":
        m = re.search(r"^Ran (\d+) tests? in", job.out, re.M)
        run = int(m.group(1)) if m else 0
        fails = sum(py_failures(job.out))
        m = re.search(r"^(?:OK|FAILED) \(.*?skipped=(\d+)", job.out, re.M)
        skipped = int(m.group(1)) if m else 0
    else:
        m = re.search(r"^(?:[\w-]+: )?(\d+) passed, (\d+) failed$", job.out, re.M)
        run, fails = (int(m.group(1)) + int(m.group(2)), int(m.group(2))) if m else (0, 0)
        skipped = 0
    if job.status != 0 and fails == 0:
        fails = 1
    return run, fails, skipped


def main(argv):
    """Runs the tests; the exit status is 0 if all passed, 1 if not, and
    128 + the signal if SIGINT, SIGTERM or SIGHUP stopped the run (after
    every job's session is stopped). A signal ignored when we start (nohup,
    a background job's SIGINT) stays ignored; a second signal while the
    first one stops the run is ignored too."""
    got = []
    STOPPING.clear()

    # The handler only records the signal: raised from a handler, an
    # exception could land while the loop's condition re-takes its lock,
    # and leave it unbalanced. The loop looks at `got` between its waits.
    def stopped(signum, frame):
        if not got:
            got.append(signum)

    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) != signal.SIG_IGN:
            handlers[sig] = signal.signal(sig, stopped)
    try:
        status = run(argv, got)
        if got:
            raise Stopped(got[0])
        return status
    except Stopped as e:
        stop_all()
        print(f"run_tests: stopped by {signal.Signals(e.signum).name}", flush=True)
        return 128 + e.signum
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def run(argv, got=()):
    """Runs the jobs; returns early, with every job left to stop_all, once
    `got` holds a signal."""
    p = argparse.ArgumentParser(description="Run every test, side by side.")
    p.add_argument("-v", action="store_true", help="print every job's whole output")
    p.add_argument("-j", type=int, default=int(os.environ.get("PD_TEST_JOBS", "0")) or
                   5 * (os.cpu_count() or 2), metavar="JOBS")
    p.add_argument("--py", action="store_true", help="only the Python tests")
    p.add_argument("--c", action="store_true", help="only the Check runners")
    a = p.parse_args(argv)
    both = not a.py and not a.c
    times = load_times(SHIPPED_TIMES, TIMES)

    def estimate(key):
        return times[key][0] if key in times else ESTIMATE.get(key, 1)

    t0 = time.monotonic()
    jobs = (py_jobs(estimate) if a.py or both else []) + (check_jobs(estimate) if a.c or both
                                                          else [])
    jobs.sort(key=lambda j: -estimate(j.key))
    ended = threading.Condition()
    queue = list(jobs)
    running = []
    cpus = os.cpu_count() or 2

    def worker(job):
        """Runs job and reports it; whatever happens, it leaves running
        and wakes the loop below, which would otherwise wait for it. A job
        a signal stopped (stop_all) is not reported: it did not fail."""
        try:
            run_job(job)
        except Exception as e:  # a job that could not start fails
            job.status, job.out = 1, f"run_tests: {job.title}: {e!r}\n"
        run, fails, _ = counts(job)
        with ended:
            try:
                if STOPPING.is_set():
                    return
                word = "ok" if job.status == 0 else "FAIL"
                what = (f"{run} tests" if job.kind[0] == "py"
                        else f"{run - fails} passed, {fails} failed")
                print(f"  {word:<4} {job.title} ({what}, {job.seconds:.1f} s, "
                      f"{job.cpu:.1f} s CPU)", flush=True)
                if job.status != 0 or a.v:
                    print(job.out.rstrip("\n"))
                    print("  " + "-" * 68, flush=True)
            finally:
                running.remove(job)
                ended.notify()

    print(f"run_tests: {len(jobs)} jobs, at most {max(1, a.j)} at a time, within "
          f"{cpus} CPUs", flush=True)
    with ended:
        while (queue or running) and not got:
            i = pick(queue, running, max(1, a.j), cpus, times)
            if i is None:
                ended.wait(0.2)
                continue
            job = queue.pop(i)
            running.append(job)
            threading.Thread(target=worker, args=(job,), daemon=True).start()
    if got:
        raise Stopped(got[0])
    wall = time.monotonic() - t0

    try:
        with open(TIMES) as f:
            history = json.load(f)
    except (OSError, ValueError):
        history = {}
    history.update({j.key: [round(j.seconds, 1), round(j.cpu, 1)] for j in jobs})
    try:
        with open(TIMES, "w") as f:
            json.dump(history, f, indent=0, sort_keys=True)
    except OSError:
        pass

    bad = [j for j in jobs if j.status != 0]
    print("\nslowest: " + ", ".join(f"{j.title} {j.seconds:.0f} s" for j in
                                    sorted(jobs, key=lambda j: -j.seconds)[:6]))
    print(f"CPU: {sum(j.cpu for j in jobs):.0f} s in all; most: " +
          ", ".join(f"{j.title} {j.cpu:.0f} s" for j in sorted(jobs, key=lambda j: -j.cpu)[:6]))
    total_run = total_failed = 0
    py = [j for j in jobs if j.kind[0] == "py"]
    if py:
        run = sum(counts(j)[0] for j in py)
        skipped = sum(counts(j)[2] for j in py)
        fl = [py_failures(j.out) for j in py]
        failures, errors = sum(f for f, _ in fl), sum(e for _, e in fl)
        # A job that did not get to its summary (it crashed or hung).
        errors += sum(1 for j, f in zip(py, fl) if j.status != 0 and f == (0, 0))
        print("-" * 70)
        print(f"Ran {run} tests in {wall:.3f}s\n")
        if failures or errors:
            parts = [f"failures={failures}"] * bool(failures) + [f"errors={errors}"] * bool(errors)
            parts += [f"skipped={skipped}"] * bool(skipped)
            print(f"FAILED ({', '.join(parts)})")
        else:
            print("OK" + (f" (skipped={skipped})" if skipped else ""))
        total_run += run - skipped
        total_failed += failures + errors
    for binary, _, _ in RUNNERS:
        mine = [j for j in jobs if j.kind == ("c", binary)]
        if not mine:
            continue
        run = sum(counts(j)[0] for j in mine)
        failed = sum(counts(j)[1] for j in mine)
        print(f"{binary}: {run - failed} passed, {failed} failed")
        total_run += run
        total_failed += failed
    if bad:
        print("failed: " + ", ".join(j.title for j in bad))
    print(f"{total_run - total_failed} passed, {total_failed} failed")
    return 1 if bad or total_failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
