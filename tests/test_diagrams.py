"""The state-machine diagrams of `python3 -m gen --dot` (templates/future.dot.j2):
run and teardown states in separate clusters, one edge per GOTO, YIELD,
next, false `when`, RETURN and DONE, the way into teardown, and each state
labelled with its io op or child. Rendered through Graphviz when it is
installed (`make deps-diagrams`)."""
import contextlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
import unittest

from gen import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SPEC = """\
future: node
params:
  - {name: fd, type: int}
fields:
  - {name: w, future: write_all}
  - {name: n, type: int, init: "0"}
states:
  start:
    io: read
    args: {fd: self->fd, buf: 0, len: 0}
    then: |
      if (res < 0)
          RETURN(res);
      GOTO(write);   /* GOTO(nowhere) in a comment is not an edge */
  write:
    await: w
    args: [self->fd, '"x"', 1]
    then: |
      if (++self->n < 3)
          YIELD(start);
      GOTO(race);
  race:
    select:
      rd: {io: read, args: {fd: self->fd, buf: 0, len: 0}, timeout_ms: 5, then: RETURN(res);}
      nap: {io: timeout, args: {ms: 10}, then: GOTO(edge);}
  edge:
    when: self->n > 0
    next: done
    do: GOTO(done);
  done:
    do: RETURN(self->n);
teardown:
  bye:
    when: self->fd >= 0
    next: close
    io: write
    args: {fd: self->fd, buf: '"bye"', len: 3}
  close:
    io: close
    args: {fd: self->fd}
    then: DONE();
drop: ""
"""


class Dot(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pd-dot-")
        path = os.path.join(self.dir, "node.yaml")
        with open(path, "w") as f:
            f.write(SPEC)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(["--dot", "-o", self.dir, "-I", os.path.join(ROOT, "specs"), path])
        self.assertEqual(code, 0, err.getvalue())
        with open(os.path.join(self.dir, "node.dot")) as f:
            self.dot = f.read()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def edges(self):
        return set(re.findall(r'"(\w+)" -> "(\w+)"(?: \[label="([^"]*)")?', self.dot))

    def cluster(self, name):
        m = re.search(r'subgraph "cluster_%s" \{(.*?)\n    \}' % name, self.dot, re.S)
        self.assertIsNotNone(m, name)
        return set(re.findall(r'"s_(\w+)" \[label', m.group(1)))

    def test_run_and_teardown_states_are_apart(self):
        self.assertEqual(self.cluster("run"), {"start", "write", "race", "edge", "done"})
        self.assertEqual(self.cluster("teardown"), {"bye", "close"})

    def test_labels_name_the_op_or_child(self):
        self.assertIn('"s_start" [label="start\\nio read"]', self.dot)
        self.assertIn('"s_write" [label="write\\nawait w (write_all)"]', self.dot)
        self.assertIn('"s_race" [label="race\\nselect\\nrd: io read (timeout)\\n'
                      'nap: io timeout"]', self.dot)
        self.assertIn('"s_edge" [label="edge\\ndo"]', self.dot)

    def test_every_kind_of_edge(self):
        want = {
            ("pd_start", "s_start", ""),
            ("s_start", "s_write", "GOTO"),
            ("s_start", "pd_ready", "RETURN"),
            ("s_write", "s_start", "YIELD"),
            ("s_write", "s_race", "GOTO"),
            ("s_race", "s_edge", "GOTO"),
            ("s_race", "pd_ready", "RETURN"),
            ("s_edge", "s_done", "next"),
            ("s_edge", "s_done", "when false"),
            ("s_edge", "s_done", "GOTO"),
            ("s_done", "pd_ready", "RETURN"),
            ("pd_ready", "pd_quiesce", "poll_drop"),
            ("s_start", "pd_quiesce", "cancel"),
            ("pd_quiesce", "s_bye", "teardown"),
            ("s_bye", "s_close", "next"),
            ("s_bye", "s_close", "when false"),
            ("s_close", "pd_drop", "DONE"),
        }
        self.assertEqual(self.edges() - {("pd_drop", "pd_dead", "")}, want)

    def test_no_edge_from_comments(self):
        self.assertNotIn("nowhere", self.dot)

    def test_without_teardown_quiesce_leads_to_drop(self):
        path = os.path.join(ROOT, "specs", "sleep_ms.yaml")
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(cli.main(["--dot", "-o", self.dir, path]), 0)
        with open(os.path.join(self.dir, "sleep_ms.dot")) as f:
            dot = f.read()
        self.assertNotIn("cluster_teardown", dot)
        self.assertIn('"pd_quiesce" -> "pd_drop";', dot)

    def test_owned_resources_are_released_before_drop_code(self):
        path = os.path.join(ROOT, "tests", "specs", "own_file.yaml")
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(cli.main(["--dot", "-o", self.dir, path]), 0)
        with open(os.path.join(self.dir, "own_file.dot")) as f:
            dot = f.read()
        self.assertIn('"pd_drop" [label="release owned\\nclose in\\nclose ofd\\n'
                      'unlink path (unless KEEP)\\nthen drop code"', dot)
        self.assertIn('"pd_quiesce" -> "pd_drop";', dot)

    @unittest.skipUnless(shutil.which("dot"), "Graphviz is not installed (make deps-diagrams)")
    def test_graphviz_renders_it(self):
        r = subprocess.run(["dot", "-Tsvg"], input=self.dot, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertIn("<svg", r.stdout)


if __name__ == "__main__":
    unittest.main()
