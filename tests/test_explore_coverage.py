"""Every spec of the library and of the examples is explored by make test.

make test runs the Check tcases tagged "harness" once more under the
simulator (tests/run_tests.py, the explore runner): a spec is explored when
a test file that tags a tcase "harness" names its vtable in a harness case.
A spec with no such case would be tested only in the orders this kernel
happens to produce; this test names it.
"""
import glob
import os
import re
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Example futures with no cancel-point case of their own, and why. Each is
# small glue around futures that are explored.
NOT_EXPLORED = {
    "http_accept": "httpd's accept loop: an accept and SPAWN of http_conn, "
                   "whose own case is explored",
    "http_drain": "httpd's shutdown sequence, driven by the process tests",
    "http_sweep": "httpd's keep-alive sweeper, a timer loop; its future case "
                  "in test_httpd.c runs on the real engines only",
}


def future_names(patterns):
    names = {}
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            with open(path, encoding="utf-8") as f:
                m = re.search(r"^future:\s*(\w+)", f.read(), re.M)
            if m:
                names[m.group(1)] = os.path.relpath(path, ROOT)
    return names


def explored_text():
    text = []
    for path in glob.glob(os.path.join(ROOT, "tests", "*.c")):
        with open(path, encoding="utf-8") as f:
            src = f.read()
        if re.search(r'tcase_set_tags\(\s*\w+\s*,\s*"harness"\s*\)', src):
            text.append(src)
    return "\n".join(text)


class ExploreCoverage(unittest.TestCase):
    def test_every_spec_has_an_explored_cancel_point_case(self):
        specs = future_names(["specs/*.yaml", "examples/*/*.yaml"])
        self.assertIn("read_file", specs)
        text = explored_text()
        missing = sorted(n for n in specs
                         if n not in NOT_EXPLORED and f"&{n}_vtable" not in text)
        self.assertEqual(missing, [], "specs with no cancel-point case in a "
                         "tcase tagged \"harness\": " +
                         ", ".join(f"{n} ({specs[n]})" for n in missing))

    def test_the_exceptions_are_real_specs_still_unexplored(self):
        specs = future_names(["specs/*.yaml", "examples/*/*.yaml"])
        text = explored_text()
        for name in NOT_EXPLORED:
            self.assertIn(name, specs, f"{name} is listed but has no spec")
            self.assertNotIn(f"&{name}_vtable", text,
                             f"{name} is explored now: drop it from NOT_EXPLORED")


if __name__ == "__main__":
    unittest.main()
