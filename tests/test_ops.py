"""The op table (gen/ops.py) against what it drives: the runtime's
pd__prep_OP helpers, the generated code, and docs/spec-language.md."""
import os
import re
import subprocess
import sys
import tempfile
import unittest

from gen import cli
from gen.ops import EPOLL, OPS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import ops_doc  # noqa: E402

PREP = re.compile(r"static inline int pd__prep_(\w+)\(pd_cx \*cx, pd__op \*op,?([^)]*)\)")


def helpers():
    """pd__prep_OP of runtime/pd_prep.h: name -> [(C type, parameter)]."""
    with open(os.path.join(ROOT, "runtime", "pd_prep.h")) as f:
        text = f.read()
    out = {}
    for m in PREP.finditer(text):
        params = []
        for p in m.group(2).split(","):
            p = " ".join(p.split())
            if p:
                pm = re.match(r"(.*?)(\w+)$", p)
                params.append((pm.group(1).replace(" *", " *").strip(), pm.group(2)))
        out[m.group(1)] = params
    return out


class OpTable(unittest.TestCase):
    def test_every_op_has_its_runtime_helper_with_the_tables_arguments(self):
        found = helpers()
        for op in OPS.values():
            with self.subTest(op=op.name):
                self.assertIn(op.name, found, f"no pd__prep_{op.name} in pd_prep.h")
                if op.name == "timeout":
                    # The generator converts ms or ns to one ns argument.
                    continue
                want = [(a.ctype, a.name) for a in op.args]
                self.assertEqual(found[op.name], want)

    def test_no_helper_without_an_op(self):
        self.assertEqual(sorted(set(helpers()) - set(OPS)), [])

    def test_only_fd_returning_ops_are_marked_so(self):
        fd_ops = sorted(op.name for op in OPS.values() if op.returns_fd)
        self.assertEqual(fd_ops, ["accept", "openat", "openat2", "socket"])

    def test_every_op_says_how_the_epoll_engine_runs_it(self):
        self.assertEqual(sorted(EPOLL), sorted(OPS))
        for name, how in EPOLL.items():
            self.assertTrue(how.strip(), name)

    def test_the_docs_table_is_the_tables_output(self):
        path = os.path.join(ROOT, "docs", "spec-language.md")
        with open(path) as f:
            text = f.read()
        self.assertEqual(ops_doc.rewrite(text), text,
                         "docs/spec-language.md's op table is stale: run make ops-doc")

    def test_every_op_generates_code_that_compiles(self):
        """One state per op, every argument a field of the table's C type."""
        lines = ["future: every_op", "include: [\"<linux/openat2.h>\", \"<linux/stat.h>\","
                 " \"<sys/uio.h>\"]", "fields:"]
        for op in OPS.values():
            for a in op.args:
                if op.name != "timeout" or a.name == "ms":
                    lines.append(f"  - {{name: {op.name}_{a.name}, type: \"{a.ctype}\"}}")
        lines.append("states:")
        names = list(OPS)
        for i, name in enumerate(names):
            op = OPS[name]
            args = ", ".join(f"{a.name}: self->{name}_{a.name}" for a in op.args
                             if name != "timeout" or a.name == "ms")
            nxt = f"GOTO(s_{names[i + 1]});" if i + 1 < len(names) else "RETURN(res);"
            lines += [f"  s_{name}:", f"    io: {name}"]
            if args:
                lines.append(f"    args: {{{args}}}")
            lines.append(f"    then: {nxt}")
        with tempfile.TemporaryDirectory(prefix="pd-ops-") as d:
            spec = os.path.join(d, "every_op.yaml")
            with open(spec, "w") as f:
                f.write("\n".join(lines) + "\n")
            self.assertEqual(cli.main(["-o", d, spec]), 0)
            r = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-c",
                                "-I", os.path.join(ROOT, "runtime"), "-I", d,
                                os.path.join(d, "every_op.c"), "-o",
                                os.path.join(d, "every_op.o")],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
