"""Generator tests: golden error messages, positions, outputs, #line mapping."""
import contextlib
import io
import os
import re
import shutil
import signal
import sys
import subprocess
import tempfile
import textwrap
import unittest
import unittest.mock

from gen import cli, loader
from gen.errors import Pos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GOOD = """\
future: good
params:
  - {name: fd, type: int}
fields:
  - {name: n, type: int, init: "0"}
states:
  start:
    io: nop
    then: RETURN(res);
"""


class GenTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pd-gen-")
        self.out = os.path.join(self.dir, "out")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def spec(self, name, text):
        path = os.path.join(self.dir, name + ".yaml")
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def run_gen(self, *args):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(["-o", self.out, *args])
        return code, err.getvalue()

    def errors(self, text, name="f", extra=()):
        """Runs the generator on one spec; returns its diagnostics, path-relative."""
        path = self.spec(name, text)
        code, err = self.run_gen(path, *extra)
        self.assertNotIn("Traceback", err)
        lines = [l.replace(self.dir + "/", "") for l in err.splitlines()]
        if any(": error: " in l for l in lines):
            self.assertEqual(code, 1)
            self.assertFalse(os.path.exists(os.path.join(self.out, name + ".c")))
            self.assertFalse(os.path.exists(os.path.join(self.out, name + ".h")))
        return lines

    def assertError(self, text, expected, name="f", extra=()):
        self.assertIn(expected, self.errors(text, name, extra))


class Errors(GenTest):
    def test_malformed_yaml(self):
        self.assertError("future: f\nstates: [\n", "f.yaml:3:1: error: malformed YAML: "
                         "expected the node content, but found '<stream end>'")

    def test_duplicate_key(self):
        self.assertError("""\
            future: f
            states:
              a: {do: RETURN(0);}
              a: {do: RETURN(1);}
            """, "f.yaml:4:3: error: duplicate key 'a' (first defined at line 3)")

    def test_unknown_top_level_key(self):
        self.assertError("""\
            future: f
            quux: {}
            states:
              a: {do: RETURN(0);}
            """, "f.yaml:2:1: error: unknown key 'quux' in the spec (expected one of: "
                 "future, doc, include, output, params, fields, states, teardown, drop, send)")
        self.assertError("""\
            future: f
            stats: {}
            states:
              a: {do: RETURN(0);}
            """, "f.yaml:2:1: error: unknown key 'stats' in the spec (did you mean "
                 "'states'?)")

    def test_missing_future_and_states(self):
        lines = self.errors("doc: nothing\n")
        self.assertIn("f.yaml:1:1: error: missing required key 'future'", lines)
        self.assertIn("f.yaml:1:1: error: missing required key 'states'", lines)

    def test_bad_identifier(self):
        self.assertError("future: 2fast\nstates: {a: {do: RETURN(0);}}\n",
                         "f.yaml:1:9: error: future name '2fast' is not a C identifier")

    def test_c_keyword(self):
        self.assertError("""\
            future: f
            fields:
              - {name: int, type: int}
            states: {a: {do: RETURN(0);}}
            """, "f.yaml:3:12: error: field name 'int' is a C keyword")

    def test_reserved_prefix(self):
        self.assertError("future: pd_thing\nstates: {a: {do: RETURN(0);}}\n",
                         "f.yaml:1:9: error: future name 'pd_thing': names starting with "
                         "pd_ are reserved")

    @unittest.skipUnless(shutil.which("cc"), "needs a C compiler")
    def test_libc_collision(self):
        self.assertError("future: sleep\nstates: {a: {do: RETURN(0);}}\n",
                         "f.yaml:1:9: error: future name 'sleep' is already declared by "
                         "the C headers the generated code includes, or a macro; choose "
                         "another name")

    def test_duplicate_member_names(self):
        self.assertError("""\
            future: f
            params:
              - {name: fd, type: int}
            fields:
              - {name: fd, type: int}
            states: {a: {do: RETURN(0);}}
            """, "f.yaml:5:12: error: duplicate name 'fd' (first declared at line 3); "
                 "params, fields and locals share one namespace")

    def test_duplicate_state_across_phases(self):
        self.assertError("""\
            future: f
            states:
              a: {do: RETURN(0);}
            teardown:
              a: {do: DONE();}
            drop: ""
            """, "f.yaml:5:3: error: duplicate state name 'a' (first declared at line 3)")

    def test_goto_missing_state(self):
        self.assertError("""\
            future: f
            states:
              a:
                do: |
                  if (1)
                      GOTO(nowhere);
                  RETURN(0);
            """, "f.yaml:6:16: error: GOTO(nowhere): no state named 'nowhere'")

    def test_goto_other_phase(self):
        self.assertError("""\
            future: f
            states:
              a: {do: GOTO(b);}
            teardown:
              b: {do: DONE();}
            drop: ""
            """, "f.yaml:3:16: error: GOTO(b): 'b' is a teardown state; GOTO stays "
                 "within its phase")

    def test_return_in_teardown(self):
        self.assertError("""\
            future: f
            states:
              a: {do: RETURN(0);}
            teardown:
              b:
                do: RETURN(1);
            drop: ""
            """, "f.yaml:6:9: error: RETURN is not allowed in teardown: teardown has "
                 "no output (use DONE() to finish it)")

    def test_done_in_run_state(self):
        self.assertError("""\
            future: f
            states:
              a: {do: DONE();}
            """, "f.yaml:3:11: error: DONE is only allowed in teardown (use "
                 "RETURN(value) to complete a run state)")

    def test_macro_in_comment_is_ignored(self):
        lines = self.errors("""\
            future: f
            states:
              a:
                do: |
                  /* GOTO(nowhere) would be wrong */
                  RETURN(0); // DONE() too
            """)
        self.assertEqual([l for l in lines if "error" in l], [])

    def test_unknown_io_op(self):
        self.assertError("""\
            future: f
            states:
              a: {io: xyzzy, then: RETURN(res);}
            """, "f.yaml:3:11: error: unknown io op 'xyzzy' (known: accept, bind, close, "
                 "connect, fsync, ftruncate, listen, mkdirat, nop, openat, openat2, poll_add, read, "
                 "readv, recv, recvmsg, renameat, send, send_zc, sendmsg, shutdown, socket, "
                 "splice, statx, timeout, unlinkat, write, writev)")

    def test_did_you_mean(self):
        lines = self.errors("""\
            future: f
            fields:
              - {name: kid, type: int}
            states:
              a:
                io: raed
                thn: RETURN(res);
              b:
                io: read
                args: {fd: 0, bfu: 0, len: 1}
                then: GOTO(bb);
              c:
                do: RETURN(0);
                next: cc
            """)
        for want in [
                "f.yaml:6:9: error: unknown io op 'raed' (did you mean 'read'?)",
                "f.yaml:7:5: error: unknown key 'thn' in state 'a' (did you mean 'then'?)",
                "f.yaml:10:19: error: unknown argument 'bfu' for io 'read' (did you "
                "mean 'buf'?)",
                "f.yaml:11:16: error: GOTO(bb): no state named 'bb' (did you mean 'b'?)",
                "f.yaml:14:11: error: next: no state named 'cc' (did you mean 'c'?)"]:
            self.assertIn(want, lines)

    def test_unknown_io_argument(self):
        self.assertError("""\
            future: f
            states:
              a:
                io: close
                args: {fd: 3, how: 1}
                then: RETURN(res);
            """, "f.yaml:5:19: error: unknown argument 'how' for io 'close' "
                 "(arguments: fd)")

    def test_missing_required_argument(self):
        self.assertError("""\
            future: f
            states:
              a:
                io: read
                args: {fd: 0, buf: 0}
                then: RETURN(res);
            """, "f.yaml:5:11: error: io 'read' is missing required argument 'len'")

    def test_timeout_needs_ms_or_ns(self):
        self.assertError("""\
            future: f
            states:
              a:
                io: timeout
                args: {ms: 1, ns: 2}
                then: RETURN(res);
            """, "f.yaml:5:11: error: io 'timeout' needs exactly one of the arguments ms, ns")

    def test_await_of_a_plain_field(self):
        self.assertError("""\
            future: f
            fields:
              - {name: n, type: int}
            states:
              a: {await: n, then: RETURN(0);}
            """, "f.yaml:5:14: error: await: 'n' is not a child future (declare it "
                 "with future: TYPE)")

    def test_unknown_child_type(self):
        self.assertError("""\
            future: f
            fields:
              - {name: c, future: ghost}
            states:
              a: {await: c, then: RETURN(0);}
            """, "f.yaml:3:23: error: unknown child future type 'ghost' (no spec named "
                 "on the command line or found as ghost.yaml on the -I path)")

    def test_child_argument_count(self):
        self.spec("kid", GOOD.replace("good", "kid"))
        self.assertError("""\
            future: f
            fields:
              - {name: c, future: kid}
            states:
              a: {await: c, args: [1, 2], then: RETURN(0);}
            """, "f.yaml:5:23: error: await c: kid takes 1 argument (fd), got 2",
            extra=("-I", self.dir))

    def test_server_library_futures_argument_count(self):
        # tcp_listen and send_all are found on the default path; a listener
        # awaited with a port alone, a send without its length, are refused.
        lines = self.errors("""\
            future: f
            fields:
              - {name: ln, future: tcp_listen}
              - {name: tx, future: send_all}
            states:
              a: {await: ln, args: [8080], then: RETURN(out);}
              b: {await: tx, args: [3, '"x"'], then: RETURN((int)out);}
            """)
        self.assertIn("f.yaml:6:24: error: await ln: tcp_listen takes 4 arguments "
                      "(host, port, backlog, bound), got 1", lines)
        self.assertIn("f.yaml:7:24: error: await tx: send_all takes 3 arguments "
                      "(fd, buf, len), got 2", lines)

    def test_child_cycle(self):
        lines = self.errors("""\
            future: f
            fields:
              - {name: me, future: f}
            states:
              a: {await: me, then: RETURN(0);}
            """)
        self.assertIn("f.yaml:3:24: error: child futures form a cycle: f -> f "
                      "(a future cannot contain itself)", lines)

    def test_teardown_without_drop(self):
        self.assertError("""\
            future: f
            states:
              a: {do: RETURN(0);}
            teardown:
              b: {do: DONE();}
            """, "f.yaml:4:1: error: a future with teardown must say what its sync drop "
                 "does: add 'drop:' (use drop: \"\" for nothing)")

    def test_when_without_next(self):
        self.assertError("""\
            future: f
            states:
              a:
                when: 1
                do: RETURN(0);
            """, "f.yaml:4:11: error: run state 'a' has 'when' but no 'next': where does "
                 "control go when the guard is false?")

    def test_io_without_then_or_next(self):
        self.assertError("""\
            future: f
            states:
              a: {io: nop}
            """, "f.yaml:3:3: error: run state 'a' has no then and no next: it would "
                 "fall through")

    def test_two_actions(self):
        self.assertError("""\
            future: f
            states:
              a: {do: RETURN(0);, io: nop}
            """, "f.yaml:3:23: error: state 'a' has more than one action (do, io); a "
                 "state does exactly one thing")

    def test_unreachable_state_is_a_warning(self):
        lines = self.errors("""\
            future: f
            states:
              a: {do: RETURN(0);}
              b: {do: RETURN(1);}
            """)
        self.assertIn("f.yaml:4:3: warning: state 'b' is unreachable", lines)
        self.assertTrue(os.path.exists(os.path.join(self.out, "f.c")))

    def test_not_a_mapping_gives_no_traceback(self):
        for text in ["- 1\n- 2\n", "future: f\nstates: 3\n", "future: f\nstates: {a: 3}\n",
                     "future: [x]\nstates: {a: {do: x}}\n", "\n", "future: f\nstates:\n  a:\n    io: [1]\n",
                     "future: f\nparams: {x: 1}\nstates: {a: {do: RETURN(0);}}\n"]:
            code, err = self.run_gen(self.spec("f", text))
            self.assertEqual(code, 1, text)
            self.assertNotIn("Traceback", err)
            for line in err.strip().splitlines():
                self.assertRegex(line, r"^.+:\d+:\d+: (error|warning): ")

    def test_all_errors_of_a_spec_are_reported(self):
        lines = self.errors("""\
            future: f
            bogus: 1
            states:
              a: {io: nope}
              b: {do: GOTO(c);}
            """)
        self.assertEqual(len([l for l in lines if ": error: " in l]), 4)

    def test_one_bad_spec_does_not_stop_a_good_one(self):
        good = self.spec("good", GOOD)
        bad = self.spec("bad", "future: bad\nstates: {a: {do: DONE();}}\n")
        code, err = self.run_gen(good, bad)
        self.assertEqual(code, 1)
        self.assertTrue(os.path.exists(os.path.join(self.out, "good.c")))
        self.assertFalse(os.path.exists(os.path.join(self.out, "bad.c")))

    def test_a_spec_whose_child_is_in_error_writes_nothing(self):
        self.spec("kid", "future: kid\nstates: {a: {do: DONE();}}\n")
        self.assertTrue(self.errors("""\
            future: f
            fields:
              - {name: c, future: kid}
            states:
              a: {await: c, then: RETURN(out);}
            """, extra=("-I", self.dir)))
        self.assertFalse(os.path.exists(os.path.join(self.out, "f.c")))


@contextlib.contextmanager
def hang_guard(seconds=60):
    """Fails the test if the block runs for minutes: a guard against the
    quadratic and exponential work these tests exist for, not a timing."""
    def expire(signum, frame):
        raise AssertionError(f"still running after {seconds} s: unbounded work")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def bomb(levels):
    """A spec whose anchors and aliases would expand to 10**levels nodes."""
    text = "future: bl\nstates: {s: {do: 'RETURN(0);'}}\n"
    text += "x0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
    for i in range(1, levels):
        text += f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


class Hostile(GenTest):
    """Specs built to make the generator hang, crash or emit broken C."""

    def one_line_diagnostics(self, err):
        for line in err.splitlines():
            self.assertRegex(line, r"^[^\n]+:\d+:\d+: (error|warning): ")

    def test_alias_bomb_is_refused_before_expansion(self):
        code, err = self.run_gen(self.spec("bl", bomb(9)))
        self.assertEqual(code, 1)
        self.assertEqual(err.replace(self.dir + "/", ""),
                         "bl.yaml:3:5: error: YAML anchor '&a0' is not allowed in a spec "
                         "(anchors and aliases are refused); if this is C text, quote the "
                         "value or use a block scalar (|)\n")

    def test_alias_alone_is_refused(self):
        self.assertError("future: f\nstates: {a: {do: *p = 0;}}\n",
                         "f.yaml:2:18: error: YAML alias '*p' is not allowed in a spec "
                         "(anchors and aliases are refused); if this is C text, quote the "
                         "value or use a block scalar (|)")

    def test_anchor_alone_is_refused(self):
        self.assertError("future: f\nstates: &s {a: {do: RETURN(0);}}\n",
                         "f.yaml:2:9: error: YAML anchor '&s' is not allowed in a spec "
                         "(anchors and aliases are refused); if this is C text, quote the "
                         "value or use a block scalar (|)")

    def test_tag_is_refused(self):
        self.assertError("future: f\nstates: {a: {do: !!str RETURN(0);}}\n",
                         "f.yaml:2:18: error: YAML tag 'tag:yaml.org,2002:str' is not "
                         "allowed in a spec; if this is C text, quote the value or use a "
                         "block scalar (|)")

    def test_deep_nesting_has_a_limit(self):
        for depth in (65, 2000):
            text = "future: f\nstates: {a: {do: RETURN(0);}}\nx: " + "[" * depth + "]" * depth
            lines = self.errors(text + "\n")
            self.assertEqual(lines, ["f.yaml:3:" + str(4 + 63) + ": error: nesting deeper "
                                     "than 64 levels"])

    def test_reader_error_is_one_line_at_the_character(self):
        self.assertEqual(self.errors("future: f\nstates: {a: {do: \x01}}\n"),
                         ["f.yaml:2:18: error: malformed YAML: character #x0001 is not "
                          "allowed in YAML (write it as an escape in C)"])

    def test_names_with_line_breaks_are_escaped(self):
        lines = self.errors('future: "a\\nb"\nstates: {a: {do: RETURN(0);}}\n')
        self.assertEqual(lines, ["f.yaml:1:9: error: future name 'a\\nb' is not a C identifier"])

    def test_spec_path_cannot_inject_code(self):
        d = os.path.join(self.dir, "x*/ int injected_by_path; /*")
        os.makedirs(d)
        weird = os.path.join(self.dir, 'q"uote\\back\nline??/')
        os.makedirs(weird)
        for where in (d, weird):
            path = os.path.join(where, "good.yaml")
            with open(path, "w") as f:
                f.write(GOOD.replace("RETURN(res);", "RETURN(no_such_name);"))
            self.assertEqual(self.run_gen(path), (0, ""))
            obj = os.path.join(self.dir, "good.o")
            r = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                                "-I", os.path.join(ROOT, "runtime"), "-I", self.out, "-c",
                                os.path.join(self.out, "good.c"), "-o", obj],
                               capture_output=True, text=True)
            # The one compile error is the snippet's, reported at the spec.
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no_such_name", r.stderr)
            self.assertIn("good.yaml:9:", r.stderr)
            self.assertEqual(len([l for l in r.stderr.splitlines() if " error: " in l]), 1,
                             r.stderr)

    def test_comment_text_is_escaped(self):
        path = self.spec("good", GOOD.replace("future: good\n", "future: good\n"
                                              "doc: 'a /* b */ c ??/ d'\n"))
        self.assertEqual(self.run_gen(path), (0, ""))
        r = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wcomment",
                            "-Wtrigraphs", "-I", os.path.join(ROOT, "runtime"), "-I", self.out,
                            "-c", os.path.join(self.out, "good.c"), "-o", os.devnull],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_huge_array_type_is_split_in_linear_time(self):
        with hang_guard():
            lines = self.errors("future: f\nfields:\n  - {name: x, type: 'int" + " " * 200000
                                + "[1] [2]'}\nstates: {a: {do: RETURN(0);}}\n")
        self.assertEqual(lines, [])
        shutil.rmtree(self.out)
        with hang_guard():
            lines = self.errors("future: f\nfields:\n  - {name: x, type: 'int" + " " * 200000
                                + "x[1'}\nstates: {a: {do: RETURN(0);}}\n")
        self.assertEqual(lines, ["f.yaml:3:200026: error: '[' is not closed in type of 'x'"])

    def test_array_suffixes(self):
        from gen.validate import split_array
        self.assertEqual(split_array("char [4] [ 8 ]"), ("char", "[4][8]"))
        self.assertEqual(split_array("int"), ("int", ""))
        self.assertEqual(split_array("int x[]"), ("int x[]", ""))
        self.assertEqual(split_array("int a]"), ("int a]", ""))

    def test_macro_positions_in_a_long_snippet(self):
        text = "if (0) GOTO(a);\n" * 200000
        node = loader.Node("scalar", text, Pos("f.yaml", 1, 1), "|")
        node.src_line, node.indent = 5, 6
        with hang_guard():
            last = [node.pos_at(i * 16 + 7) for i in range(200000)][-1]
        self.assertEqual((last.line, last.col), (5 + 199999, 14))

    def test_state_count_has_a_limit(self):
        states = "".join(f"  s{i}: {{do: GOTO(s{i + 1});}}\n" for i in range(4096))
        self.assertEqual(self.errors("future: f\nstates:\n" + states
                                     + "  s4096: {do: RETURN(0);}\n"),
                         ["f.yaml:2:1: error: 4097 states: a future has at most 4096 "
                          "(run and teardown together)"])

    def test_state_list_is_walked_a_bounded_number_of_times(self):
        # Checking each snippet's GOTOs once walked every state: quadratic,
        # and a 4097-state spec took 8 s. Counted, not timed.
        from gen import validate

        class Counted(list):
            walks = 0

            def __iter__(self):
                Counted.walks += 1
                return super().__iter__()

        real = validate.Validator.states
        validate.Validator.states = lambda v, *a: Counted(real(v, *a))
        try:
            states = "".join(f"  s{i}: {{do: GOTO(s{i + 1});}}\n" for i in range(1000))
            self.assertEqual(self.errors("future: f\nstates:\n" + states
                                         + "  s1000: {do: RETURN(0);}\n"), [])
        finally:
            validate.Validator.states = real
        self.assertLess(Counted.walks, 50)

    def test_children_embedding_the_next_twice_are_resolved_once(self):
        for i in range(30):
            body = (f"fields:\n  - {{name: a, future: c{i + 1}}}\n"
                    f"  - {{name: b, future: c{i + 1}}}\n"
                    "states:\n  s: {await: a, then: GOTO(t);}\n"
                    "  t: {await: b, then: RETURN(0);}\n") if i < 29 else \
                "states: {s: {do: RETURN(0);}}\n"
            self.spec(f"c{i}", f"future: c{i}\n" + body)
        with hang_guard():
            code, err = self.run_gen("--check", "-I", self.dir, os.path.join(self.dir, "c0.yaml"))
        self.assertEqual((code, err), (0, ""))

    def test_long_names_fail_check_and_run_alike(self):
        name = "n" * 250
        path = self.spec(name, GOOD.replace("future: good", f"future: {name}"))
        want = (1, f"{path}:1:9: error: future name 'nnnnnnnnnnnnnnnn...' is longer than 64 "
                   "characters\n")
        self.assertEqual(self.run_gen("--check", path), want)
        self.assertEqual(self.run_gen(path), want)

    def test_trailing_backslash_is_refused(self):
        self.assertError("future: f\nstates:\n  a:\n    when: x \\\n    next: a\n"
                         "    do: RETURN(0);\n",
                         "f.yaml:4:13: error: when ends with a backslash: the line "
                         "continuation would join the generated code that follows")

    def test_unbalanced_brackets_are_reported_at_the_spec(self):
        self.assertError("future: f\nstates:\n  a:\n    do: |\n      if (1) {\n"
                         "          RETURN(0);\n      RETURN(1);\n",
                         "f.yaml:5:14: error: '{' is not closed in do")
        self.assertError("future: f\nstates:\n  a:\n    do: 'RETURN(0); } /* { */ x(\"}\");'\n",
                         "f.yaml:4:21: error: '}' without a matching '{' in do")

    def test_outputs_get_the_usual_mode(self):
        old = os.umask(0o022)
        try:
            self.assertEqual(self.run_gen(self.spec("good", GOOD)), (0, ""))
        finally:
            os.umask(old)
        for ext in ("c", "h"):
            mode = os.stat(os.path.join(self.out, "good." + ext)).st_mode & 0o777
            self.assertEqual(mode, 0o644)


@unittest.skipUnless(shutil.which("cc"), "needs a C compiler")
class Collisions(GenTest):
    """Accepted specs must compile: names are checked against the real headers."""

    def cc(self, *names, extra=""):
        """Compiles OUT/NAME.c for each name, and one file including every header."""
        both = os.path.join(self.dir, "both.c")
        with open(both, "w") as f:
            f.write("".join(f'#include "{n}.h"\n' for n in names) + extra)
        for src in [os.path.join(self.out, n + ".c") for n in names] + [both]:
            r = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                                "-I", os.path.join(ROOT, "runtime"), "-I", self.out, "-c",
                                src, "-o", os.devnull], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)

    def test_params_named_like_generated_locals_compile(self):
        params = "".join(f"  - {{name: {n}, type: int}}\n"
                         for n in ("rt", "mem", "t", "fut", "out", "res", "cqe_flags"))
        path = self.spec("good", GOOD.replace("params:\n  - {name: fd, type: int}\n",
                                              "params:\n" + params))
        self.assertEqual(self.run_gen(path), (0, ""))
        self.cc("good")

    def test_params_self_and_cx_are_refused(self):
        for name in ("self", "cx"):
            self.assertError(GOOD.replace("name: fd,", f"name: {name},"),
                             f"f.yaml:3:12: error: param name '{name}' is reserved: "
                             "generated code and snippets use it")

    def test_param_named_after_the_api_is_refused(self):
        self.assertError(GOOD.replace("name: fd,", "name: good_out,"),
                         "f.yaml:3:12: error: param name 'good_out' is a name the "
                         "generated code declares for future 'good'")

    def test_members_named_after_macros_are_refused(self):
        for name in ("unix", "linux", "errno", "BUFSIZ", "EOF", "alignas"):
            self.assertError(GOOD.replace("name: n,", f"name: {name},"),
                             f"f.yaml:5:12: error: field name '{name}' is a macro of the "
                             "C compiler or headers; choose another name")

    def test_future_names_of_the_c_library_are_refused(self):
        for name in ("printf", "dup", "memcpy", "rename", "getpid", "size_t", "FILE",
                     "uint8_t", "pid_t", "ptrdiff_t", "io_uring"):
            self.assertError(GOOD.replace("future: good", f"future: {name}"),
                             f"{name}.yaml:1:9: error: future name '{name}' is already "
                             "declared by the C headers the generated code includes, or a "
                             "macro; choose another name", name=name)

    def test_generated_names_are_probed_too(self):
        # Future 'posix' would declare posix_spawn, which <spawn.h> has.
        self.assertError(GOOD.replace("future: good", "future: posix\ninclude: [<spawn.h>]"),
                         "posix.yaml:1:9: error: future 'posix': the generated name "
                         "'posix_spawn' is already declared by the C headers the generated "
                         "code includes, or a macro; choose another future name",
                         name="posix")

    def test_array_never_started_compiles(self):
        self.spec("kid", GOOD.replace("good", "kid"))
        path = self.spec("f", """\
            future: f
            fields:
              - {name: kids, future: kid, count: 2}
            states:
              a: {do: RETURN(0);}
            """)
        self.assertEqual(self.run_gen("-I", self.dir, path, os.path.join(self.dir, "kid.yaml")),
                         (0, ""))
        self.cc("f", "kid")

    def test_case_differing_futures_have_their_own_guards(self):
        kid = self.spec("kid", GOOD.replace("good", "kid"))
        Kid = self.spec("Kid", GOOD.replace("good", "Kid"))
        self.assertEqual(self.run_gen(kid, Kid), (0, ""))
        self.cc("kid", "Kid", extra="void f(kid *a, Kid *b);\n")

    def test_bad_type_is_reported_at_the_spec(self):
        for line, bad in ((2, "output: no_such_type\n"),
                          (3, "fields:\n  - {name: x, type: no_such_type}\n")):
            path = self.spec("f", "future: f\n" + bad + "states: {a: {do: RETURN(0);}}\n")
            self.assertEqual(self.run_gen(path), (0, ""))
            r = subprocess.run(["cc", "-std=gnu11", "-I", os.path.join(ROOT, "runtime"),
                                "-I", self.out, "-c", os.path.join(self.out, "f.c"),
                                "-o", os.devnull], capture_output=True, text=True)
            first = [l for l in r.stderr.splitlines() if " error: " in l][0]
            self.assertRegex(first, rf"f\.yaml:{line}:\d+: error: .*no_such_type")

    def test_missing_header_is_reported_at_the_include(self):
        path = self.spec("f", "future: f\ninclude:\n  - <stdio.h>\n  - <no/such.h>\n"
                              "states: {a: {do: RETURN(0);}}\n")
        self.assertEqual(self.run_gen(path), (0, ""))
        r = subprocess.run(["cc", "-std=gnu11", "-I", os.path.join(ROOT, "runtime"),
                            "-I", self.out, "-c", os.path.join(self.out, "f.c"),
                            "-o", os.devnull], capture_output=True, text=True)
        self.assertRegex(r.stderr, r"f\.yaml:4:\d+: fatal error: no/such\.h")


class YamlTraps(GenTest):
    """PyYAML's errors keep FILE:LINE:COL and gain a hint at the usual trap."""

    def test_colon_space_in_a_plain_value(self):
        self.assertError("future: f\nstates:\n  a:\n    do: x = a ? b : c;\n",
                         "f.yaml:4:19: error: malformed YAML: mapping values are not allowed "
                         "here (a ': ' inside a plain value starts a mapping: quote the value "
                         "or use a block scalar (|))")

    def test_anchor_at_the_start_of_a_value(self):
        self.assertError("future: f\nstates:\n  a:\n    do: &self->x;\n",
                         "f.yaml:4:15: error: malformed YAML: expected alphabetic or numeric "
                         "character, but found '>' ('&', '*' or '!' at the start of a value "
                         "begins a YAML anchor, alias or tag: quote the value or use a block "
                         "scalar (|))")

    def test_text_after_a_closing_quote(self):
        self.assertError('future: f\nstates:\n  a:\n    do: "bye\\n" + 1;\n',
                         "f.yaml:4:17: error: malformed YAML: expected <block end>, but found "
                         "'<scalar>' (text follows a closing quote: quote the whole value "
                         "('\"bye\\n\"' for a C string literal) or use a block scalar (|))")

    def test_tab_indentation(self):
        self.assertError("future: f\nstates:\n\ta: {do: RETURN(0);}\n",
                         "f.yaml:3:1: error: malformed YAML: found character '\\t' that "
                         "cannot start any token (indent with spaces: YAML does not allow "
                         "tabs there)")

    def test_comment_after_a_snippet_is_a_warning(self):
        lines = self.errors("future: f\nstates:\n  a:\n    do: RETURN(1); # RETURN(2);\n")
        self.assertEqual(lines, ["f.yaml:4:20: warning: '# RETURN(2);' after do is a YAML "
                                 "comment and is not part of the C text; quote the value or "
                                 "use a block scalar (|) if it belongs to it"])
        self.assertTrue(os.path.exists(os.path.join(self.out, "f.c")))

    def test_comment_inside_a_block_scalar_is_c(self):
        self.assertEqual(self.errors("future: f\nstates:\n  a:\n    do: |\n"
                                     "      RETURN(1); # not YAML\n"), [])


class CommandLine(GenTest):
    def test_version(self):
        from gen import __version__
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit) as e:
            cli.main(["--version"])
        self.assertEqual(e.exception.code, 0)
        self.assertEqual(out.getvalue(), f"polldrop-gen {__version__}\n")
        self.assertEqual(self.run_gen(self.spec("good", GOOD)), (0, ""))
        with open(os.path.join(self.out, "good.h")) as f:
            self.assertIn(f"by polldrop-gen {__version__}.", f.read())

    def test_runs_from_any_directory_and_finds_the_library_specs(self):
        path = self.spec("uses_lib", """\
            future: uses_lib
            fields:
              - {name: w, future: write_all}
            states:
              a: {await: w, args: [1, '"x"', 1], then: RETURN((int)out);}
            """)
        env = dict(os.environ, PYTHONPATH=ROOT, POLLDROP_GEN_PROG="polldrop-gen")
        r = subprocess.run([sys.executable, "-m", "gen", "-o", "out", path], cwd=self.dir,
                           env=env, capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertTrue(os.path.exists(os.path.join(self.out, "uses_lib.c")))
        r = subprocess.run([sys.executable, "-m", "gen", "--bogus", path], cwd=self.dir, env=env,
                           capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stderr),
                         (2, "polldrop-gen: error: unrecognized arguments: --bogus\n"))

    # The library's names are those of the specs in the library directory
    # the generator resolves children from last (ROOT/specs here; in an
    # install, PREFIX/share/polldrop/specs): a user's spec of that name
    # shadows the library's, and its header and symbols clash with the
    # installed ones.
    SHADOW = """\
        # mine, not the library's
        future: read_file
        params:
          - {name: fd, type: int}
        states:
          a: {do: RETURN(self->fd);}
        """

    def shadow_warning(self, file):
        lib = os.path.join(ROOT, "specs", "read_file.yaml")
        return (f"{file}:2:1: warning: future 'read_file' has the name of a library "
                f"future ({lib}): this spec shadows it, and its header and symbols clash "
                f"with the library's; choose another name")

    def test_a_spec_named_like_a_library_future_is_a_warning(self):
        lines = self.errors(self.SHADOW, name="read_file")
        self.assertEqual(lines, [self.shadow_warning("read_file.yaml")])
        self.assertTrue(os.path.exists(os.path.join(self.out, "read_file.c")))

    def test_a_child_named_like_a_library_future_is_a_warning(self):
        # Found on the -I path, which is searched before the library.
        os.mkdir(os.path.join(self.dir, "inc"))
        self.spec("inc/read_file", self.SHADOW)
        lines = self.errors("""\
            future: parent
            fields:
              - {name: r, future: read_file}
            states:
              a: {await: r, args: [0], then: RETURN(out);}
            """, name="parent", extra=("-I", os.path.join(self.dir, "inc")))
        self.assertEqual(lines, [self.shadow_warning("inc/read_file.yaml")])

    def test_the_library_spec_itself_is_not_a_shadow(self):
        # Named on the command line, or found as a child: the same file.
        lib = os.path.join(ROOT, "specs", "read_file.yaml")
        self.assertEqual(self.run_gen("--check", lib), (0, ""))
        self.assertEqual(self.run_gen("--check", "-I", os.path.join(ROOT, "specs"),
                                      self.spec("uses_lib", """\
            future: uses_lib
            fields:
              - {name: r, future: read_file}
            states:
              a: {await: r, args: ['"f"', 0, 0], then: RETURN((int)out);}
            """)), (0, ""))

    @unittest.skipUnless(shutil.which("cc") and shutil.which("pkg-config"),
                         "needs a C compiler and pkg-config")
    def test_harness_skeleton_compiles_and_is_not_overwritten(self):
        path = self.spec("good", GOOD.replace("  - {name: fd, type: int}\n",
                                              "  - {name: fd, type: int}\n"
                                              "  - {name: path, type: const char *}\n"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(self.run_gen("--harness", path), (0, ""))
        skeleton = os.path.join(self.out, "good_harness_test.c")
        self.assertEqual(out.getvalue(), f"python3 -m gen: wrote {skeleton}\n")
        with open(skeleton) as f:
            text = f.read()
        self.assertIn("good_init(self, fx->fd, fx->path);", text)
        self.assertIn(".vt = &good_vtable,", text)
        cflags = subprocess.run(["pkg-config", "--cflags", "check"], capture_output=True,
                                text=True).stdout.split()
        r = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", *cflags,
                            "-I", os.path.join(ROOT, "runtime"), "-I", self.out, "-c",
                            skeleton, "-o", os.devnull], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(skeleton, "a") as f:
            f.write("/* mine */\n")
        with contextlib.redirect_stdout(io.StringIO()):
            code, err = self.run_gen("--harness", path)
        self.assertEqual((code, err), (0, f"{skeleton}:1:1: warning: exists, not overwritten "
                                          "(it is yours to edit; remove it for a fresh "
                                          "skeleton)\n"))
        with open(skeleton) as f:
            self.assertTrue(f.read().endswith("/* mine */\n"))


    @unittest.skipUnless(shutil.which("cc") and shutil.which("pkg-config"),
                         "needs a C compiler and pkg-config")
    def test_harness_skeleton_names_groups_and_multishot(self):
        path = self.spec("msk", """\
            future: msk
            output: long
            params:
              - {name: fd, type: int}
              - {name: g, type: pd_bufgroup *}
            states:
              recv:
                io: recv
                multishot: true
                args: {fd: self->fd, group: self->g}
                then: |
                  if (res <= 0)
                      RETURN(res);
            """)
        with contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(self.run_gen("--harness", path)[0], 0)
        with open(os.path.join(self.out, "msk_harness_test.c")) as f:
            text = f.read()
        self.assertIn("{ 8, 4096, &msk_fix.g },", text)
        self.assertIn(".ngroups = 1,", text)
        self.assertIn(".multishot = 1,", text)
        self.assertIn("pd_harness_run_with(&c, &o, &st);", text)
        cflags = subprocess.run(["pkg-config", "--cflags", "check"], capture_output=True,
                                text=True).stdout.split()
        r = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", *cflags,
                            "-I", os.path.join(ROOT, "runtime"), "-I", self.out, "-c",
                            os.path.join(self.out, "msk_harness_test.c"), "-o", os.devnull],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)


class StructuredErrors(GenTest):
    def test_unknown_branch_key(self):
        self.assertError("""\
            future: f
            states:
              a:
                select:
                  x: {io: nop, then: RETURN(0);, after: 1}
            """, "f.yaml:5:38: error: unknown key 'after' in branch 'x' (expected one "
                 "of: io, args, await, then, timeout_ms, multishot)")

    def test_select_branch_without_then(self):
        self.assertError("""\
            future: f
            states:
              a:
                select:
                  x: {io: nop, then: RETURN(0);}
                  y: {io: nop}
            """, "f.yaml:6:7: error: select branch 'y' is missing required key 'then'")

    def test_select_has_no_state_then(self):
        self.assertError("""\
            future: f
            states:
              a:
                select:
                  x: {io: nop, then: RETURN(0);}
                then: RETURN(1);
            """, "f.yaml:6:5: error: a select has no state-level then: give each "
                 "branch its own then (with timeout_ms, the state's then runs when the "
                 "deadline fires)")

    def test_select_deadline_needs_a_state_then(self):
        self.assertError("""\
            future: f
            states:
              a:
                timeout_ms: 5
                select:
                  x: {io: nop, then: RETURN(0);}
            """, "f.yaml:4:5: error: a select with timeout_ms needs a state-level "
                 "then: it runs when the deadline fires")

    def test_timed_out_is_not_a_branch_name(self):
        self.assertError("""\
            future: f
            states:
              a:
                join:
                  timed_out: {io: nop}
                then: RETURN(0);
            """, "f.yaml:5:7: error: branch name 'timed_out' is reserved for generated "
                 "code")

    def test_join_branch_with_then(self):
        self.assertError("""\
            future: f
            states:
              a:
                join:
                  x: {io: nop, then: RETURN(0);}
                then: RETURN(x);
            """, "f.yaml:5:20: error: join branch 'x' has no then of its own: the "
                 "state's then sees every branch")

    def test_branch_needs_one_action(self):
        self.assertError("""\
            future: f
            states:
              a:
                join:
                  x: {args: {}}
                then: RETURN(0);
            """, "f.yaml:5:7: error: branch 'x' must have exactly one of io, await")

    def test_goto_out_of_a_branch_then(self):
        self.assertError("""\
            future: f
            states:
              a:
                select:
                  x: {io: nop, then: GOTO(elsewhere);}
            """, "f.yaml:5:31: error: GOTO(elsewhere): no state named 'elsewhere'")

    def test_local_shadowing_a_field(self):
        self.assertError("""\
            future: f
            fields:
              - {name: buf, type: int}
            states:
              a:
                locals:
                  - {name: buf, type: "char[8]"}
                do: RETURN(0);
            """, "f.yaml:7:16: error: local 'buf' shadows the field declared at line 3; "
                 "locals are reached as self->NAME too")

    def test_local_of_another_state(self):
        self.assertError("""\
            future: f
            states:
              a:
                locals:
                  - {name: tmp, type: int}
                do: |
                  self->tmp = 1;
                  GOTO(b);
              b:
                do: RETURN(self->tmp);
            """, "f.yaml:10:22: error: 'tmp' is a local of state 'a'; in state 'b' its "
                 "storage belongs to another state (make it a field to keep it across "
                 "states)")

    def test_await_a_local_of_another_state(self):
        self.spec("kid", GOOD.replace("good", "kid"))
        self.assertError("""\
            future: f
            states:
              a:
                locals:
                  - {name: c, future: kid}
                do: GOTO(b);
              b:
                await: c
                args: [1]
                then: RETURN(out);
            """, "f.yaml:8:12: error: await: 'c' is a local of another state; await a "
                 "field or a local of this state", extra=("-I", self.dir))

    def test_timeout_ms_on_await(self):
        self.spec("kid", GOOD.replace("good", "kid"))
        self.assertError("""\
            future: f
            fields:
              - {name: c, future: kid}
            states:
              a:
                join:
                  k: {await: c, args: [1], timeout_ms: 5}
                then: RETURN(k);
            """, "f.yaml:7:32: error: timeout_ms goes on the whole join, not on its await "
                 "branch 'k'", extra=("-I", self.dir))

    def test_same_child_in_two_branches(self):
        self.spec("kid", GOOD.replace("good", "kid"))
        self.assertError("""\
            future: f
            fields:
              - {name: c, future: kid}
            states:
              a:
                join:
                  x: {await: c, args: [1]}
                  y: {await: c, args: [2]}
                then: RETURN(x + y);
            """, "f.yaml:8:18: error: await: child 'c' is already used by another "
                 "branch of this state", extra=("-I", self.dir))


class MultishotErrors(GenTest):
    """multishot, group, KEEP and pd_buf: where each may go, and why not."""

    HEAD = """\
        future: f
        params:
          - {name: fd, type: int}
          - {name: g,  type: pd_bufgroup *}
        fields:
          - {name: kept, type: pd_buf}
          - {name: n,    type: int}
        states:
        """

    def state(self, body):
        return textwrap.dedent(self.HEAD) + textwrap.indent(textwrap.dedent(body), "  ")

    def test_multishot_on_an_op_without_it(self):
        self.assertError(self.state("""\
            s:
              io: send
              multishot: true
              args: {fd: self->fd, buf: '"x"', len: 1}
              then: RETURN(res);
            """), "f.yaml:11:5: error: io 'send' has no multishot form "
                  "(multishot ops: accept, poll_add, recv)")

    def test_multishot_must_be_a_boolean(self):
        self.assertError(self.state("""\
            s:
              io: accept
              multishot: often
              args: {fd: self->fd}
              then: RETURN(res);
            """), "f.yaml:11:16: error: multishot must be true or false, not 'often'")

    def test_multishot_recv_needs_group(self):
        self.assertError(self.state("""\
            s:
              io: recv
              multishot: true
              args: {fd: self->fd, buf: 0, len: 0}
              then: RETURN(res);
            """), "f.yaml:11:5: error: a multishot recv needs group: the kernel "
                  "picks a buffer for each completion")

    def test_group_or_buf_not_both(self):
        self.assertError(self.state("""\
            s:
              io: recv
              args: {fd: self->fd, group: self->g, buf: 0}
              then: RETURN(res);
            """), "f.yaml:11:42: error: io 'recv' takes either group or buf and len: "
                  "with group, the kernel picks the buffer")

    def test_ioprio_not_with_group(self):
        self.assertError(self.state("""\
            s:
              io: recv
              args: {fd: self->fd, group: self->g, ioprio: IORING_RECVSEND_POLL_FIRST}
              then: RETURN(res);
            """), "f.yaml:11:42: error: io 'recv' takes ioprio only with buf and len: "
                  "a recv with group is armed by its group's rules")

    def test_multishot_with_timeout(self):
        self.assertError(self.state("""\
            s:
              io: accept
              timeout_ms: 10
              multishot: true
              args: {fd: self->fd}
              then: RETURN(res);
            """), "f.yaml:12:5: error: timeout_ms does not go with multishot: a linked "
                  "timeout would end the whole request, not one wait")

    def test_multishot_needs_then(self):
        self.assertError(self.state("""\
            s:
              io: accept
              multishot: true
              args: {fd: self->fd}
              next: s
            """), "f.yaml:9:3: error: multishot state 's' needs a then: it runs once "
                  "per completion")

    def test_multishot_in_select(self):
        # Accepted: the branch's then falls off its end to wait for the
        # next completion, which is neither an error nor a warning.
        lines = self.errors(self.state("""\
            s:
              select:
                a:
                  io: accept
                  multishot: true
                  args: {fd: self->fd}
                  then: self->n++;
                b:
                  io: recv
                  multishot: true
                  args: {fd: self->fd, group: self->g}
                  then: KEEP(kept);
                t:
                  io: timeout
                  args: {ms: 10}
                  then: RETURN(self->n);
            """))
        self.assertEqual(lines, [])
        self.assertTrue(os.path.exists(os.path.join(self.out, "f.c")))

    def test_multishot_accept_takes_no_addr(self):
        self.assertError(self.state("""\
            s:
              select:
                a:
                  io: accept
                  multishot: true
                  args: {fd: self->fd, addr: self->g}
                  then: RETURN(res);
            """), "f.yaml:14:30: error: a multishot accept takes no 'addr' (it takes "
                  "fd, flags): one request serves every completion; getpeername(2) on "
                  "an accepted fd gives the peer's address")

    def test_multishot_recv_without_group_says_only_that(self):
        lines = self.errors(self.state("""\
            s:
              io: recv
              multishot: true
              args: {fd: self->fd, grop: self->g}
              then: RETURN(res);
            """))
        self.assertEqual(lines, [
            "f.yaml:11:5: error: a multishot recv needs group: the kernel picks a "
            "buffer for each completion",
            "f.yaml:12:26: error: unknown argument 'grop' for io 'recv' (did you mean "
            "'group'?)"])

    def test_recv_without_buf_mentions_group(self):
        self.assertError(self.state("""\
            s:
              io: recv
              args: {fd: self->fd, len: 4}
              then: RETURN(res);
            """), "f.yaml:11:11: error: io 'recv' is missing required argument 'buf' "
                  "(or give group: a pd_bufgroup *, for a buffer the kernel picks)")

    def test_multishot_in_join(self):
        self.assertError(self.state("""\
            s:
              join:
                a:
                  io: accept
                  multishot: true
                  args: {fd: self->fd}
              then: RETURN(a);
            """), "f.yaml:13:9: error: multishot does not go in a join: a join "
                  "waits for one completion of each branch")

    def test_yield_in_multishot_select_branch(self):
        self.assertError(self.state("""\
            s:
              select:
                a:
                  io: accept
                  multishot: true
                  args: {fd: self->fd}
                  then: YIELD(s);
            """), "f.yaml:15:15: error: YIELD is not allowed in a multishot then: fall "
                  "off the end to wait for the next completion, or GOTO another state")

    def test_timeout_on_a_multishot_select_branch(self):
        self.assertError(self.state("""\
            s:
              select:
                a:
                  io: accept
                  timeout_ms: 5
                  multishot: true
                  args: {fd: self->fd}
                  then: RETURN(res);
            """), "f.yaml:14:9: error: timeout_ms does not go with multishot: a linked "
                  "timeout would end the whole request, not one wait")

    def test_multishot_io_state_falls_off_without_warning(self):
        self.assertEqual(self.errors(self.state("""\
            s:
              io: accept
              multishot: true
              args: {fd: self->fd}
              then: |
                if (res < 0)
                    RETURN(res);
            """)), [])

    def test_multishot_in_teardown(self):
        self.assertError(self.HEAD + """\
          s: {do: RETURN(0);}
        teardown:
          t:
            io: accept
            multishot: true
            args: {fd: self->fd}
            then: DONE();
        drop: ""
        """, "f.yaml:13:5: error: multishot is for run states: a teardown state "
             "finishes, it does not serve")

    def test_yield_in_multishot_then(self):
        self.assertError(self.state("""\
            s:
              io: accept
              multishot: true
              args: {fd: self->fd}
              then: YIELD(s);
            """), "f.yaml:13:11: error: YIELD is not allowed in a multishot then: fall "
                  "off the end to wait for the next completion, or GOTO another state")

    def test_stop_outside_a_multishot_then(self):
        self.assertError(self.state("""\
            s:
              io: recv
              args: {fd: self->fd, group: self->g}
              then: STOP();
            """), "f.yaml:12:11: error: STOP is only allowed in the then of a multishot "
                  "io state: it ends that state's request")

    def test_stop_in_a_multishot_select_branch(self):
        # STOP is for a multishot io state, whose wait sends a stop again
        # when its cancel missed; a select's wait does not.
        self.assertError(self.state("""\
            s:
              select:
                a:
                  io: accept
                  multishot: true
                  args: {fd: self->fd}
                  then: STOP();
                b:
                  io: nop
                  then: RETURN(0);
            """), "f.yaml:15:15: error: STOP is only allowed in the then of a multishot "
                  "io state: it ends that state's request")

    def test_keep_outside_a_group_then(self):
        self.assertError(self.state("""\
            s:
              io: accept
              multishot: true
              args: {fd: self->fd}
              then: KEEP(kept);
            """), "f.yaml:13:11: error: KEEP is only allowed in the then of a recv "
                  "with group (it moves that then's buf), or on a param or field with "
                  "owns: file (the file is complete)")

    def test_keep_into_a_plain_field(self):
        self.assertError(self.state("""\
            s:
              io: recv
              args: {fd: self->fd, group: self->g}
              then: KEEP(n);
            """), "f.yaml:12:16: error: KEEP(n): 'n' is not a pd_buf field")

    def test_pd_buf_local(self):
        self.assertError(self.state("""\
            s:
              locals: [{name: b, type: pd_buf}]
              do: RETURN(0);
            """), "f.yaml:10:30: error: local 'b': a pd_buf must be a plain field "
                  "(a field is released on every destruction path)")

    def test_group_recv_in_join(self):
        self.assertError(self.state("""\
            s:
              join:
                a:
                  io: recv
                  args: {fd: self->fd, group: self->g}
              then: RETURN(0);
            """), "f.yaml:13:37: error: a recv with group goes in an io state or a "
                  "select branch: a join's then has no buf")


class Parentheses(GenTest):
    """Every spec expression the generated C computes with is one value."""

    def c_text(self, text):
        path = self.spec("f", text)
        code, err = self.run_gen(path)
        self.assertEqual(code, 0, err)
        with open(os.path.join(self.out, "f.c")) as f:
            # The #line directives around spec text do not matter here.
            return re.sub(r"\n#line [^\n]*\n\s*", " ", f.read())

    def test_timeout_ms_sum_is_scaled_as_one_value(self):
        c = self.c_text("""\
            future: f
            params: [{name: a, type: long}, {name: b, type: long}]
            states:
              s:
                io: timeout
                args: {ms: self->a + self->b}
                then: RETURN(res);
            """)
        self.assertIn("( self->a + self->b ) * 1000000LL", c)

    def test_arguments_linked_timeouts_and_inits_are_parenthesised(self):
        c = self.c_text("""\
            future: f
            params: [{name: fd, type: int}, {name: a, type: long}]
            fields: [{name: buf, type: "char[8]"}, {name: n, type: long, init: "self->a ? 1 : 2"}]
            states:
              s:
                locals: [{name: m, type: long, init: self->a + 1}]
                io: read
                timeout_ms: self->a + 5
                args: {fd: self->fd, buf: self->buf, len: sizeof self->buf - 1}
                then: RETURN(res);
            """)
        self.assertIn("(self->fd), (self->buf), (sizeof self->buf - 1)", c)
        self.assertIn("pd__link_next(cx, &self->pd__s_ts, ( self->a + 5 ));", c)
        self.assertIn("self->n = (self->a ? 1 : 2);", c)
        self.assertIn("self->m = (self->a + 1);", c)


class Stats(GenTest):
    @unittest.skipUnless(shutil.which("cc"), "needs a C compiler")
    def test_stats_shows_the_overlap(self):
        path = self.spec("two", """\
            future: two
            states:
              a:
                locals: [{name: x, type: "char[4096]"}]
                io: nop
                then: GOTO(b);
              b:
                locals: [{name: y, type: "char[4096]"}]
                io: nop
                then: RETURN(0);
            """)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code, err = self.run_gen("--stats", path)
        self.assertEqual(code, 0, err)
        name, size, naive, saved = out.getvalue().splitlines()[1].split()
        self.assertEqual(name, "two")
        self.assertLess(int(size), 4096 + 256)
        self.assertGreater(int(naive), 8192)


class Send(GenTest):
    """send: true gives F_spawn_on; params bound to a thread are refused."""

    def test_send_must_be_a_boolean(self):
        self.assertError("""\
            future: f
            send: sometimes
            states:
              a: {do: RETURN(0);}
            """, "f.yaml:2:7: error: send must be true or false, not 'sometimes'")

    def test_send_refuses_a_task_param(self):
        self.assertError("""\
            future: f
            send: true
            params:
              - {name: peer, type: pd_task *}
            states:
              a: {do: RETURN(0);}
            """, "f.yaml:4:12: error: param 'peer' of a send future has type "
                 "'pd_task *': a task belongs to its runtime's thread (its references "
                 "and state are not atomic), and a send future runs on the target "
                 "runtime's thread")

    def test_send_refuses_a_context_param(self):
        self.assertError("""\
            future: f
            send: yes
            params:
              - {name: c, type: pd_cx *}
            states:
              a: {do: RETURN(0);}
            """, "f.yaml:4:12: error: param 'c' of a send future has type 'pd_cx *': "
                 "a context is valid only during the poll that received it, and a "
                 "send future runs on the target runtime's thread")

    def test_send_accepts_a_runtime_param(self):
        self.assertEqual(self.errors("""\
            future: f
            send: true
            params:
              - {name: home, type: pd_runtime *}
            states:
              a: {do: RETURN(0);}
            """), [])

    def test_spawn_on_only_with_send(self):
        self.run_gen(self.spec("good", GOOD))
        with open(os.path.join(self.out, "good.h")) as f:
            self.assertNotIn("spawn_on", f.read())
        self.run_gen(self.spec("sent", GOOD.replace("future: good", "future: sent\nsend: true")))
        with open(os.path.join(self.out, "sent.h")) as f:
            self.assertIn("int sent_spawn_on(pd_runtime *target, int fd);", f.read())


class Output(GenTest):
    def test_check_writes_nothing(self):
        code, err = self.run_gen("--check", self.spec("good", GOOD))
        self.assertEqual((code, err), (0, ""))
        self.assertFalse(os.path.exists(self.out))

    def test_output_is_deterministic_and_marked(self):
        path = self.spec("good", GOOD)
        self.run_gen(path)
        with open(os.path.join(self.out, "good.c")) as f:
            first = f.read()
        self.run_gen(path)
        with open(os.path.join(self.out, "good.c")) as f:
            self.assertEqual(f.read(), first)
        self.assertIn("Do not edit", first)
        self.assertIn("good_state_name", first)
        with open(os.path.join(self.out, "good.h")) as f:
            h = f.read()
        self.assertIn("#ifndef POLLDROP_GEN_good_H", h)
        for api in ["void good_init(good *self, int fd);",
                    "pd_poll good_poll(good *self, pd_cx *cx, good_out *out);",
                    "pd_poll good_poll_drop(good *self, pd_cx *cx);",
                    "void good_drop(good *self);",
                    "extern const pd_vtable good_vtable;",
                    "static inline pd_dyn good_dyn(good *self)",
                    "pd_task *good_spawn(pd_runtime *rt, int fd);",
                    "int good_block_on(pd_runtime *rt, int fd, good_out *out);"]:
            self.assertIn(api, h)

    # A control statement's header without its brace on the line; a
    # do-while's closing `} while (...)` is not one.
    BRACELESS = re.compile(r"^(\s*)(?:(?:\}\s*)?(?:else\s+)?if|for|while)\s*\(.*\)\s*$"
                           r"|^(\s*)(?:\}\s*)?else\s*$")

    def braceless_bodies_at_the_headers_indent(self, text):
        """The lines of TEXT whose braceless if/else/for/while header is followed
        (past blank and preprocessor lines) by a line no deeper that is not `{`."""
        lines = text.split("\n")
        bad = []
        for i, line in enumerate(lines):
            m = self.BRACELESS.match(line)
            if not m:
                continue
            indent = len(m.group(1) if m.group(1) is not None else m.group(2))
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or lines[j].lstrip().startswith("#")):
                j += 1
            if j < len(lines) and lines[j].strip() != "{" \
                    and len(lines[j]) - len(lines[j].lstrip()) <= indent:
                bad.append("%d: %s / %s" % (i + 1, line.strip(), lines[j].strip()))
        return bad

    def test_generated_bodies_are_indented_under_their_headers(self):
        # Generated C reads like hand-written C: the body of an if without
        # braces is indented under it, for every spec of the tree (the library's,
        # the tests', the examples').
        self.assertEqual(self.braceless_bodies_at_the_headers_indent(
            "    if (x)\n    y();\n"), ["1: if (x) / y();"])
        self.assertEqual(self.braceless_bodies_at_the_headers_indent(
            "    if (x)\n        y();\n    } while (0)\n    z();\n"), [])
        groups = ["specs", "tests/specs"] + sorted(
            os.path.relpath(d, ROOT) for d, _, files in os.walk(os.path.join(ROOT, "examples"))
            if any(f.endswith(".yaml") for f in files))
        self.assertIn("examples/httpd", groups)
        for n, group in enumerate(groups):
            d = os.path.join(ROOT, group)
            specs = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".yaml"))
            out = os.path.join(self.dir, "g%d" % n)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = cli.main(["-o", out, "-I", os.path.join(ROOT, "specs"), *specs])
            self.assertEqual(code, 0, err.getvalue())
            for f in sorted(os.listdir(out)):
                if f.endswith((".c", ".h")):
                    with open(os.path.join(out, f)) as fh:
                        with self.subTest(spec=os.path.join(group, f)):
                            self.assertEqual(
                                self.braceless_bodies_at_the_headers_indent(fh.read()), [])

    def test_library_specs_validate(self):
        specs = sorted(os.path.join(ROOT, "specs", f)
                       for f in os.listdir(os.path.join(ROOT, "specs")) if f.endswith(".yaml"))
        code, err = self.run_gen("--check", *specs)
        self.assertEqual((code, err), (0, ""))


@unittest.skipUnless(shutil.which("cc"), "needs a C compiler")
class LineDirectives(GenTest):
    def cc(self, name, extra=()):
        """Compiles OUT/NAME.c as the Makefile does; returns (status, stderr)."""
        r = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", *extra,
                            "-I", os.path.join(ROOT, "runtime"), "-I", self.out, "-c",
                            os.path.join(self.out, name + ".c"), "-o", os.devnull],
                           capture_output=True, text=True)
        return r.returncode, r.stderr

    def compile_error(self, text, extra=()):
        code, err = self.run_gen(self.spec("f", text))
        self.assertEqual(code, 0, err)
        status, stderr = self.cc("f", extra)
        self.assertNotEqual(status, 0)
        return stderr

    def first_error(self, stderr):
        return next(l for l in stderr.splitlines() if " error: " in l)

    def test_error_in_then_points_at_the_spec(self):
        err = self.compile_error("""\
            future: f
            states:
              a:
                io: nop
                then: |
                  int ok = 1;
                  undeclared_thing = ok;
                  RETURN(res);
            """)
        self.assertIn("f.yaml:7:", err)
        self.assertIn("undeclared_thing", err)

    def test_error_in_an_argument_points_at_the_spec(self):
        err = self.compile_error("""\
            future: f
            states:
              a:
                io: close
                args: {fd: no_such_fd}
                then: RETURN(res);
            """)
        self.assertIn("f.yaml:5:", err)

    # A state's only op is prepared in the condition of its slow-path test;
    # a #line inside a macro's arguments is not honoured (C11 6.10.3p11),
    # so the spec's arguments must not sit inside one.
    ONE_OP = """\
        future: f
        params:
          - {name: fd, type: int}
        states:
          a:
            io: %s
            args: %s
            then: RETURN(res);
        """

    def test_bad_escape_in_an_argument_points_at_the_spec(self):
        args = """{fd: self->fd, buf: '"\\g"', len: 2}"""
        err = self.compile_error(self.ONE_OP % ("write", args))
        self.assertRegex(self.first_error(err), r"f\.yaml:7:\d+: error: unknown escape")

    def test_argument_errors_point_at_the_spec_without_macro_tracking(self):
        for op, args in (("write", "{fd: self->fd, buf: no_such_buf, len: 1}"),
                         ("timeout", "{ms: no_such_ms}")):
            with self.subTest(op=op):
                err = self.compile_error(self.ONE_OP % (op, args),
                                         ["-ftrack-macro-expansion=0"])
                self.assertRegex(self.first_error(err), r"f\.yaml:7:\d+: error: .*no_such_")

    def test_code_that_ends_mid_statement_is_reported_at_the_spec(self):
        # What follows a snippet is generated code: it must not become the
        # rest of the snippet's last statement (the body of its for or if).
        head = ("future: f\nfields:\n  - {name: n, type: int}\nstates:\n  a:\n"
                "    io: nop\n    then: RETURN(res);\n")
        for code in ("for (int i = 0; i < self->n; i++)", "self->n = // and then",
                     "if (self->n)", "self->n = self->n +"):
            with self.subTest(code=code):
                err = self.compile_error(head + "teardown: {t: {do: DONE();}}\n"
                                         "drop: |\n  " + code + "\n")
                self.assertRegex(self.first_error(err), r"f\.yaml:10:\d+: error: ")
                err = self.compile_error(head + "teardown:\n  t:\n    do: |\n      " + code
                                         + "\ndrop: \"\"\n")
                self.assertRegex(self.first_error(err), r"f\.yaml:11:\d+: error: ")

    # Initialisers on consecutive spec lines share one #line; a gap, or one
    # that cannot share a line (a // comment), takes its own.
    INITS = """\
        future: f
        fields:
          - {name: a, type: int, init: "1"}
          - {name: b, type: int, init: "2"}
          - {name: c, type: int, init: 3 // three}
          - {name: d, type: int, init: "4"}
          - name: e
            type: int
            init: "5"
        states:
          s:
            locals:
              - {name: l1, type: int, init: "6"}
              - {name: l2, type: int, init: "7"}
            do: RETURN(self->l1 + self->l2);
        """

    def test_errors_in_runs_of_initialisers_point_at_their_lines(self):
        for value, line in (('"1"', 3), ('"2"', 4), ("3 //", 5), ('"4"', 6), ('"5"', 9),
                            ('"6"', 13), ('"7"', 14)):
            with self.subTest(line=line):
                text = self.INITS.replace(f"init: {value}", f"init: no_such_init{value[1:]}"
                                          if value[0] != '"' else "init: no_such_init", 1)
                self.assertNotEqual(text, self.INITS)
                err = self.compile_error(text)
                self.assertRegex(self.first_error(err),
                                 rf"f\.yaml:{line}:\d+: error: .*no_such_init")

    def test_a_run_of_initialisers_takes_one_line_directive(self):
        code, err = self.run_gen(self.spec("f", self.INITS))
        self.assertEqual(code, 0, err)
        c_path = os.path.join(self.out, "f.c")
        with open(c_path) as f:
            lines = f.read().split("\n")
        init = "\n".join(lines[next(i for i, l in enumerate(lines) if l.startswith("void f_init(")):])
        init = init[:init.index("\n}\n")]
        self.assertEqual(re.findall(r'#line (\d+) "[^"]*f\.yaml"', init), ["3", "5", "6", "9"])
        self.assertIn("    self->a = (1);\n    self->b = (2);\n", init)
        # The generated code after each piece of spec text resumes at its own line.
        for i, l in enumerate(lines, start=1):
            m = re.match(r'#line (\d+) "(.*)"$', l)
            if m and m.group(2) == c_path:
                self.assertEqual(int(m.group(1)), i + 1)
        status, stderr = self.cc("f")
        self.assertEqual(status, 0, stderr)

    def test_clean_spec_compiles_cleanly(self):
        self.assertEqual(self.run_gen(self.spec("good", GOOD))[0], 0)
        status, stderr = self.cc("good")
        self.assertEqual(status, 0, stderr)


if __name__ == "__main__":
    unittest.main()


class ArrayErrors(GenTest):
    """Arrays of child futures: count, START and the states that wait on them."""

    def kid(self):
        self.spec("kid", GOOD.replace("good", "kid"))
        return ("-I", self.dir)

    def test_count_must_be_a_small_whole_number(self):
        self.assertError("""\
            future: f
            fields:
              - {name: k, future: kid, count: 0}
            states:
              a: {do: RETURN(0);}
            """, "f.yaml:3:35: error: count of 'k' must be a whole number from 1 to "
                 "4096, not '0'", extra=self.kid())

    def test_count_goes_with_future(self):
        self.assertError("""\
            future: f
            fields:
              - {name: k, type: int, count: 3}
            states:
              a: {do: RETURN(0);}
            """, "f.yaml:3:26: error: field 'k': count makes an array of child futures "
                 "and goes with future: (a C array is type: \"T[N]\")")

    def test_start_names_an_array(self):
        self.assertError("""\
            future: f
            fields:
              - {name: n, type: int}
            states:
              a: {do: "START(n, 0, 1); RETURN(0);"}
            """, "f.yaml:5:18: error: START: 'n' is not an array of child futures (a "
                 "field with future: and count:)")

    def test_start_takes_the_members_arguments(self):
        self.assertError("""\
            future: f
            fields:
              - {name: k, future: kid, count: 2}
            states:
              a: {do: "START(k, 0); RETURN(0);"}
            """, "f.yaml:5:18: error: START(k, i, ...): kid takes 1 argument (fd), got 0",
            extra=self.kid())

    def test_start_is_not_for_teardown(self):
        self.assertError("""\
            future: f
            fields:
              - {name: k, future: kid, count: 2}
            states:
              a: {do: RETURN(0);}
            teardown:
              t: {do: "START(k, 0, 1);"}
            drop: ""
            """, "f.yaml:7:12: error: START is only allowed in run states: teardown "
                 "cannot start new work", extra=self.kid())

    def test_join_of_a_plain_field(self):
        self.assertError("""\
            future: f
            fields:
              - {name: n, type: int}
            states:
              a: {join: n, then: RETURN(0);}
            """, "f.yaml:5:13: error: join: 'n' is not an array of child futures (a "
                 "field with future: and count:); give a mapping of branches to join or "
                 "select them")

    def test_select_over_an_array_needs_then(self):
        self.assertError("""\
            future: f
            fields:
              - {name: k, future: kid, count: 2}
            states:
              a: {select: k, next: a}
            """, "f.yaml:5:3: error: select over an array needs a then: it sees index "
                 "and out of the member that finished first", extra=self.kid())

    def test_await_of_an_array_takes_no_args(self):
        self.assertError("""\
            future: f
            fields:
              - {name: k, future: kid, count: 2}
            states:
              a: {await: k, args: [1], then: RETURN(out);}
            """, "f.yaml:5:23: error: await k: an array's members are started with "
                 "START(array, i, args...), not by await", extra=self.kid())


class FallThrough(GenTest):
    """Run-state code that can fall off its end with no next."""

    def test_code_with_no_jump_is_an_error(self):
        self.assertError("""\
            future: f
            fields:
              - {name: n, type: int}
            states:
              a:
                do: self->n = 1;
            """, "f.yaml:6:9: error: run state 'a': this code falls off its end without "
                 "GOTO, RETURN or YIELD, and the state has no next (it would abort at run "
                 "time)")

    def test_a_path_that_falls_is_a_warning(self):
        lines = self.errors("""\
            future: f
            states:
              a:
                io: nop
                then: |
                  if (res < 0)
                      RETURN(res);
                  (void)res;
            """)
        self.assertIn("f.yaml:5:11: warning: run state 'a': this code can fall off its end "
                      "without GOTO, RETURN or YIELD, and the state has no next (it would "
                      "abort at run time)", lines)
        self.assertTrue(os.path.exists(os.path.join(self.out, "f.c")))

    def test_every_path_jumps_or_next(self):
        lines = self.errors("""\
            future: f
            states:
              a:
                io: nop
                then: |
                  if (res < 0) {
                      RETURN(res);
                  } else if (res == 0)
                      GOTO(b);
                  else
                      YIELD(a);
              b:
                do: (void)0;
                next: c
              c:
                select:
                  x: {io: nop, then: "switch (res) { default: RETURN(1); }"}
            """)
        self.assertEqual([l for l in lines if "fall" in l], [])


class AcceptedBrokenC(GenTest):
    """Specs the generator once accepted and then wrote broken C for: each
    is refused at the spec now."""

    def test_recv_with_group_needs_fd(self):
        for ms, line in (("", 7), ("    multishot: true\n", 8)):
            self.assertError("future: f\n"
                             "params:\n"
                             "  - {name: g, type: pd_bufgroup *}\n"
                             "states:\n"
                             "  s:\n"
                             "    io: recv\n" + ms +
                             "    args: {group: self->g}\n"
                             "    then: RETURN(res);\n",
                             f"f.yaml:{line}:11: error: io 'recv' is missing required "
                             "argument 'fd'")

    # The names the generated code declares as parameters and locals of the
    # functions that hold spec text (the future's type is used there too).
    LOCALS = ("self", "cx", "res", "out", "cqe_flags", "more", "buf", "index",
              "timed_out")

    def test_future_named_like_a_generated_local_is_refused(self):
        for name in self.LOCALS:
            with self.subTest(name=name):
                self.assertEqual(
                    self.errors(GOOD.replace("future: good", f"future: {name}")),
                    [f"f.yaml:1:9: error: future name '{name}' is reserved: the "
                     "generated code declares a parameter or local of that name"])

    def test_the_list_holds_every_local_of_the_templates(self):
        from gen import validate
        # future.c.j2 and every template it imports or includes.
        todo, seen, text = ["future.c.j2"], set(), ""
        while todo:
            name = todo.pop()
            seen.add(name)
            with open(os.path.join(ROOT, "templates", name)) as f:
                part = f.read()
            text += part
            todo += [n for n in re.findall(r'{%-? *(?:import|include|from) "([^"]+)"', part)
                     if n not in seen]
        self.assertIn("macros.c.j2", seen)
        declared = {n for n in re.findall(r"\b(?:int|unsigned|bool|pd_buf|_out|pd_cx \*|"
                                          r"void \*|\*)\s*([a-z_][a-z0-9_]*)\s*[=;,)]", text)
                    if not n.startswith("pd__")}
        self.assertEqual(declared, set(self.LOCALS))
        self.assertEqual(validate.GENERATED_LOCALS, frozenset(self.LOCALS))

    def test_yaml_null_is_not_c(self):
        head = "future: f\nparams:\n  - {name: fd, type: int}\n"
        cases = [
            ("states:\n  s:\n    io: nop\n    timeout_ms: null\n    then: RETURN(res);\n",
             "f.yaml:7:17: error: timeout_ms is YAML null ('null'), not C: write the C "
             "text (quoted, if 'null' is meant as C)"),
            ("states:\n  s:\n    io: close\n    args: {fd: ~}\n    then: RETURN(res);\n",
             "f.yaml:7:16: error: argument 'fd' is YAML null ('~'), not C: write the C "
             "text (quoted, if '~' is meant as C)"),
            ("states:\n  s:\n    timeout_ms: Null\n    join: {a: {io: nop}}\n"
             "    then: RETURN(a);\n",
             "f.yaml:6:17: error: timeout_ms is YAML null ('Null'), not C: write the C "
             "text (quoted, if 'Null' is meant as C)"),
            ("states:\n  s:\n    when: null\n    do: RETURN(0);\n    next: s\n",
             "f.yaml:6:11: error: when is YAML null ('null'), not C: write the C text "
             "(quoted, if 'null' is meant as C)"),
            ("fields:\n  - {name: n, type: int, init: null}\n"
             "states: {s: {do: RETURN(0);}}\n",
             "f.yaml:5:32: error: init of 'n' is YAML null ('null'), not C: write the C "
             "text (quoted, if 'null' is meant as C)"),
        ]
        for body, want in cases:
            with self.subTest(want=want):
                self.assertEqual(self.errors(head + body), [want])

    def test_quoted_null_and_c_null_are_c(self):
        lines = self.errors("future: f\nstates:\n  s:\n    io: accept\n"
                            "    args: {fd: 0, addr: NULL, addrlen: 'null'}\n"
                            "    then: RETURN(res);\n")
        self.assertEqual([l for l in lines if "null" in l.lower()], [])

    def nested(self, n):
        body = "".join("if (self->n) {\n" for _ in range(n)) + "RETURN(0);\n" + "}\n" * n
        return ("future: f\nfields:\n  - {name: n, type: int}\nstates:\n  s:\n    do: |\n"
                + textwrap.indent(body + "RETURN(1);\n", "      "))

    def test_deep_nesting_of_code_has_a_limit(self):
        # 127 levels (C11 5.2.4.1) are followed; a statement inside a 128th
        # is refused, on line 7 + 128, however deep the code goes beyond.
        self.assertEqual(self.errors(self.nested(127)), [])
        for n in (128, 330, 3000):
            with self.subTest(n=n):
                shutil.rmtree(self.out, ignore_errors=True)
                self.assertEqual(self.errors(self.nested(n)), [
                    "f.yaml:135:7: error: run state 's': code nested more than 127 levels "
                    "deep (blocks, if and else): the fall-through check follows it no "
                    "further"])
        chain = ("future: f\nfields:\n  - {name: n, type: int}\nstates:\n  s:\n    do: |\n"
                 + "".join("      if (self->n)\n" for _ in range(2000))
                 + "      RETURN(0);\n      RETURN(1);\n")
        self.assertEqual(self.errors(chain), [
            "f.yaml:135:7: error: run state 's': code nested more than 127 levels deep "
            "(blocks, if and else): the fall-through check follows it no further"])

    def test_a_long_else_if_chain_is_one_level(self):
        arms = "".join(f"else if (self->n == {i})\n    GOTO(s);\n" for i in range(3000))
        code = "if (self->n < 0)\n    RETURN(-1);\n" + arms + "else\n    RETURN(0);\n"
        self.assertEqual(self.errors(
            "future: f\nfields:\n  - {name: n, type: int}\nstates:\n  s:\n    do: |\n"
            + textwrap.indent(code, "      ")), [])
        # One arm that can fall off its end is still found.
        self.assertIn("f.yaml:6:9: warning: run state 's': this code can fall off its end "
                      "without GOTO, RETURN or YIELD, and the state has no next (it would "
                      "abort at run time)", self.errors(
            "future: f\nfields:\n  - {name: n, type: int}\nstates:\n  s:\n    do: |\n"
            + textwrap.indent(code.replace("RETURN(0);", "(void)0;"), "      ")))

    def test_drop_given_as_yaml_null_is_no_code(self):
        self.assertEqual(self.errors("future: f\nstates: {s: {do: RETURN(0);}}\n"
                                     "teardown: {t: {do: DONE();}}\ndrop: ~\n"), [])
        with open(os.path.join(self.out, "f.c")) as f:
            self.assertNotIn("~", f.read())


class SlotNames(GenTest):
    """The members that hold a state's op slots, timers and child
    bookkeeping are named after the state (and branch), and stay unique."""

    def members(self, text, *extra):
        """The generated members of the union of states, and of the whole struct."""
        code, err = self.run_gen(self.spec("f", text), *extra)
        self.assertEqual(code, 0, err)
        with open(os.path.join(self.out, "f.h")) as f:
            struct = f.read().split("typedef struct f {")[1].split("} f;")[0]
        union = struct.split("union {")[1]
        find = re.compile(r"^\s+\S.* (pd__\w+)(?:\[\w+\])?;", re.M)
        return find.findall(union), find.findall(struct)

    def test_names_follow_the_states(self):
        self.assertEqual(self.members("""\
            future: f
            params: [{name: fd, type: int}]
            fields: [{name: c, future: kid}]
            states:
              bye:
                io: nop
                timeout_ms: 5
                next: both
              both:
                join:
                  one: {io: nop}
                  two: {await: c, args: [self->fd]}
                timeout_ms: 10
                then: RETURN(0);
            """, self.spec("kid", GOOD.replace("good", "kid")))[0],
            ["pd__bye_op", "pd__bye_ts", "pd__both_one_op", "pd__both_two_cs",
             "pd__both_two_out", "pd__both_deadline_op", "pd__both_deadline_ts",
             "pd__both_deadline"])

    @unittest.skipUnless(shutil.which("cc"), "needs a C compiler")
    def test_names_that_would_meet_take_the_next_free_one(self):
        # State a_b's op and branch b of state a; branch deadline of state a
        # and a's own deadline; the child of state k and the array k.
        names, every = self.members("""\
            future: f
            params: [{name: fd, type: int}]
            fields:
              - {name: c, future: kid}
              - {name: k, future: kid, count: 2}
            states:
              a_b:
                io: nop
                next: a
              a:
                join:
                  b: {io: nop}
                  deadline: {io: nop}
                timeout_ms: 10
                then: GOTO(k);
              k:
                await: c
                args: [self->fd]
                then: RETURN(out);
            """, self.spec("kid", GOOD.replace("good", "kid")))
        self.assertEqual(names, ["pd__a_b_op", "pd__a_b2_op", "pd__a_deadline_op",
                                 "pd__a_deadline2_op", "pd__a_deadline2_ts",
                                 "pd__a_deadline2", "pd__k2_cs", "pd__k2_out"])
        self.assertIn("pd__k_cs", every)
        self.assertEqual(len(every), len(set(every)))
        r = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                            "-I", os.path.join(ROOT, "runtime"), "-I", self.out, "-c",
                            os.path.join(self.out, "f.c"), "-o", os.devnull],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)


OWN_BASE = """\
future: f
include: ["<fcntl.h>"]
params:
  - {name: fd, type: int, owns: fd}
  - {name: path, type: const char *, owns: file}
fields:
  - {name: b, type: char}
states:
  s:
    io: read
    args: {fd: self->fd, buf: '&self->b', len: 1}
    then: RETURN(res);
"""


class OwnedErrors(GenTest):
    """owns:, CANCELLED() and SPAWN (docs/spec-language.md): golden messages."""

    def test_owns_kind_misspelt(self):
        self.assertError(OWN_BASE.replace("owns: fd}", "owns: fdd}"),
                         "f.yaml:4:33: error: owns of 'fd' must be one of: fd, file, "
                         "not 'fdd' (did you mean 'fd'?)")

    def test_owns_fd_not_an_int(self):
        self.assertError(OWN_BASE.replace("type: int, owns: fd", "type: long, owns: fd"),
                         "f.yaml:4:34: error: param 'fd' owns: fd but has type 'long': "
                         "an owned descriptor is an int")

    def test_owned_fd_field_without_init(self):
        self.assertError(OWN_BASE.replace("  - {name: b, type: char}",
                                          "  - {name: b, type: char}\n"
                                          "  - {name: g, type: int, owns: fd}"),
                         "f.yaml:8:32: error: field 'g' owns: fd but has no init: give it "
                         "init: \"-1\" (or the descriptor it starts with), since it is "
                         "closed whenever it is >= 0")

    def test_owns_file_not_a_path(self):
        self.assertError(OWN_BASE.replace("type: const char *, owns: file",
                                          "type: int, owns: file"),
                         "f.yaml:5:35: error: param 'path' owns: file but has type 'int': "
                         "an owned file is named by a path, a char[N] or a (const) char *")

    def test_owns_on_a_local(self):
        self.assertError(OWN_BASE.replace("    io: read\n",
                                          "    locals: [{name: x, type: int, owns: fd}]\n"
                                          "    io: read\n"),
                         "f.yaml:10:35: error: unknown key 'owns' in a local (expected one "
                         "of: name, type, init, future)")

    def test_owns_on_a_child(self):
        self.assertError(OWN_BASE.replace("  - {name: b, type: char}",
                                          "  - {name: b, type: char}\n"
                                          "  - {name: k, future: sleep_ms, owns: fd}"),
                         "f.yaml:8:33: error: child future 'k' cannot have owns: a child "
                         "releases what it owns itself")

    def test_cancelled_in_a_run_state(self):
        self.assertError(OWN_BASE.replace("then: RETURN(res);",
                                          "then: RETURN(CANCELLED());"),
                         "f.yaml:12:18: error: CANCELLED is only allowed in teardown "
                         "states and drop code: it says why the future is being destroyed")

    def test_cancelled_in_a_run_when(self):
        self.assertError(OWN_BASE.replace("    io: read\n",
                                          "    when: CANCELLED()\n    next: s\n"
                                          "    io: read\n"),
                         "f.yaml:10:11: error: CANCELLED is not allowed in when "
                         "(CANCELLED() is allowed in the when of a teardown state)")

    def test_cancelled_takes_no_argument(self):
        self.assertError(OWN_BASE + "teardown:\n  t: {do: 'if (CANCELLED(1)) DONE();'}\n"
                         "drop: ''\n",
                         "f.yaml:14:16: error: CANCELLED takes no argument: CANCELLED()")

    def test_spawn_in_drop_code(self):
        self.assertError(OWN_BASE + "drop: 'SPAWN(f, -1, \"x\");'\n",
                         "f.yaml:13:8: error: SPAWN is not allowed in drop code: drop is "
                         "synchronous")

    def test_spawn_of_an_unknown_future(self):
        self.assertError(OWN_BASE.replace("then: RETURN(res);",
                                          "then: RETURN(SPAWN(nosuch, 1));"),
                         "f.yaml:12:24: error: SPAWN(nosuch, ...): unknown future 'nosuch' "
                         "(no spec named on the command line or found as nosuch.yaml on "
                         "the -I path)")

    def test_spawn_argument_count(self):
        self.assertError(OWN_BASE.replace("then: RETURN(res);",
                                          "then: RETURN(SPAWN(f, 1));"),
                         "f.yaml:12:24: error: SPAWN(f, ...): f takes 2 arguments (fd, "
                         "path), got 1")

    def test_spawn_without_a_future(self):
        self.assertError(OWN_BASE.replace("then: RETURN(res);",
                                          "then: RETURN(SPAWN(1));"),
                         "f.yaml:12:18: error: SPAWN takes a future's name, then its "
                         "arguments: SPAWN(F, args...)")

    def test_keep_of_an_owned_file_anywhere(self):
        self.assertEqual([l for l in self.errors(OWN_BASE.replace(
            "then: RETURN(res);", "then: '{ KEEP(path); RETURN(res); }'"))
            if "error" in l], [])

    def test_keep_of_an_owned_fd(self):
        self.assertError(OWN_BASE.replace("then: RETURN(res);",
                                          "then: '{ KEEP(fd); RETURN(res); }'"),
                         "f.yaml:12:14: error: KEEP is only allowed in the then of a recv "
                         "with group (it moves that then's buf), or on a param or field "
                         "with owns: file (the file is complete)")


class TemplateCache(GenTest):
    """POLLDROP_GEN_CACHE: the templates compiled once, kept in a directory
    (make sets build/gen-cache for every generator run of the tree's build
    and tests), and loaded by the next run instead of compiled again. A
    template changed since is compiled again; a cache that cannot be read or
    written is no error. The class compiles the templates into one cache
    once; each test starts from a copy of it."""

    @classmethod
    def setUpClass(cls):
        cls.top = tempfile.mkdtemp(prefix="pd-gen-cache-")
        cls.warm = os.path.join(cls.top, "cache")
        t = cls("test_a_second_run_compiles_no_template")
        GenTest.setUp(t)
        try:
            t.templates = os.path.join(ROOT, "templates")
            cls.compiled, cls.first = t.generate(os.path.join(t.dir, "first"), cls.warm)
        finally:
            t.tearDown()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.top)

    def setUp(self):
        super().setUp()
        self.cache = os.path.join(self.dir, "cache")
        if os.path.isdir(self.warm):   # else the class's run wrote no cache
            shutil.copytree(self.warm, self.cache)
        self.templates = os.path.join(self.dir, "templates")
        shutil.copytree(os.path.join(ROOT, "templates"), self.templates)
        self.good = self.spec("good", GOOD)

    def generate(self, out, cache):
        """Runs the generator as a new process would (no templates compiled
        yet) with POLLDROP_GEN_CACHE=cache (None: unset); returns how many
        templates it compiled and what it wrote, its directory as OUT."""
        import jinja2
        from gen import render
        compiled = []
        real = jinja2.Environment.compile

        def counting(env, source, *args, **kw):
            compiled.append(args[0] if args else kw.get("name"))
            return real(env, source, *args, **kw)

        env = {k: v for k, v in os.environ.items() if k != "POLLDROP_GEN_CACHE"}
        if cache is not None:
            env["POLLDROP_GEN_CACHE"] = cache
        good = self.spec("good", GOOD)
        with unittest.mock.patch.dict(os.environ, env, clear=True), \
                unittest.mock.patch.object(render, "TEMPLATES", self.templates), \
                unittest.mock.patch.object(render, "_ENV", None), \
                unittest.mock.patch.object(jinja2.Environment, "compile", counting):
            self.out = out
            self.assertEqual(self.run_gen(good, "--dot"), (0, ""))
        texts = {}
        for n in sorted(os.listdir(out)):
            with open(os.path.join(out, n)) as f:
                texts[n] = f.read().replace(out, "OUT").replace(self.dir, "DIR")
        return len(compiled), texts

    def test_a_second_run_compiles_no_template(self):
        self.assertGreater(self.compiled, 0)
        n, texts = self.generate(os.path.join(self.dir, "warm"), self.cache)
        self.assertEqual(n, 0)
        self.assertEqual(texts, self.first)

    def test_the_same_templates_elsewhere_are_not_compiled_again(self):
        # A fresh clone's or an install's templates (the class compiled the
        # tree's): the entries are those of the templates' names, checked
        # against their text.
        n, texts = self.generate(os.path.join(self.dir, "b"), self.cache)
        self.assertEqual(n, 0)
        self.assertEqual(texts, self.first)

    def test_a_changed_template_is_compiled_again(self):
        with open(os.path.join(self.templates, "future.h.j2"), "a") as f:
            f.write("/* changed since the cache was written */\n")
        n, texts = self.generate(os.path.join(self.dir, "b"), self.cache)
        self.assertGreater(n, 0)
        self.assertIn("/* changed since the cache was written */", texts["good.h"])
        n, texts = self.generate(os.path.join(self.dir, "c"), self.cache)
        self.assertEqual(n, 0)
        self.assertIn("/* changed since the cache was written */", texts["good.h"])

    def test_another_jinja2_compiles_again(self):
        # Its compiled code differs (3.1.2's and 3.1.6's do), under the same
        # bytecode-format number.
        import jinja2
        with unittest.mock.patch.object(jinja2, "__version__", "0.0-other"):
            n, texts = self.generate(os.path.join(self.dir, "b"), self.cache)
        self.assertGreater(n, 0)
        self.assertEqual(texts, self.first)

    def test_the_checksum_covers_the_environments_options(self):
        import jinja2
        from gen import render

        def salt(**options):
            env = jinja2.Environment(**options)
            with unittest.mock.patch.dict(os.environ, {"POLLDROP_GEN_CACHE": self.cache}):
                return render._template_cache(env).salt

        self.assertEqual(salt(trim_blocks=True), salt(trim_blocks=True))
        self.assertNotEqual(salt(trim_blocks=True), salt(trim_blocks=False))
        self.assertNotEqual(salt(), salt(undefined=jinja2.StrictUndefined))
        self.assertNotEqual(salt(), salt(keep_trailing_newline=True))

    def test_a_cached_template_names_this_trees_file(self):
        # The class's entries were compiled from the tree's templates; this
        # copy of them loads those entries, and what it loads (the template,
        # every code object of it, a traceback through it) names the copy's
        # file, not the tree's.
        import traceback
        import types
        import jinja2
        from gen import render

        def codes(code):
            yield code
            for c in code.co_consts:
                if isinstance(c, types.CodeType):
                    yield from codes(c)

        tree = os.path.join(ROOT, "templates")
        with unittest.mock.patch.dict(os.environ, {"POLLDROP_GEN_CACHE": self.cache}), \
                unittest.mock.patch.object(render, "TEMPLATES", self.templates), \
                unittest.mock.patch.object(render, "_ENV", None), \
                unittest.mock.patch.object(jinja2.Environment, "compile",
                                           side_effect=AssertionError("compiled again")):
            for name in ("future.h.j2", "future.c.j2", "macros.c.j2"):
                path = os.path.join(self.templates, name)
                t = render.env().get_template(name)
                self.assertEqual(t.filename, path)
                funcs = [t.root_render_func, *t.blocks.values()]
                for code in (c for fn in funcs for c in codes(fn.__code__)):
                    self.assertEqual(code.co_filename, path, code.co_name)
            # f is None: its first attribute fails inside the template
            # (assertRaises would drop the traceback).
            try:
                render.env().get_template("future.h.j2").render(f=None)
            except jinja2.UndefinedError as e:
                tb = e.__traceback__
            else:
                self.fail("rendered without f")
        files = [fr.filename for fr in traceback.extract_tb(tb)]
        self.assertIn(os.path.join(self.templates, "future.h.j2"), files)
        self.assertEqual([f for f in files if f.startswith(tree + os.sep)], [])

    def test_a_cache_that_cannot_be_used_is_no_error(self):
        # Under a regular file: neither read nor written.
        with open(os.path.join(self.dir, "file"), "w") as f:
            f.write("not a directory\n")
        n, texts = self.generate(os.path.join(self.dir, "a"), os.path.join(self.dir, "file", "c"))
        self.assertGreater(n, 0)
        self.assertEqual(texts, self.first)
        # Every entry truncated or garbage: compiled again, and rewritten.
        for i, name in enumerate(sorted(os.listdir(self.cache))):
            with open(os.path.join(self.cache, name), "r+b") as f:
                data = f.read()
                f.seek(0)
                f.truncate()
                f.write(data[:len(data) // 2] if i % 2 else b"\x00garbage")
        n, texts = self.generate(os.path.join(self.dir, "c"), self.cache)
        self.assertGreater(n, 0)
        self.assertEqual(texts, self.first)
        n, texts = self.generate(os.path.join(self.dir, "d"), self.cache)
        self.assertEqual(n, 0)
        self.assertEqual(texts, self.first)
