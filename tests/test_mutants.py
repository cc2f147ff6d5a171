"""The mutants of `make mutate` still fit the code.

Each mutant replaces one exact piece of text; when the code it targets is
rewritten, the mutant no longer applies and `make mutate` (a slow target,
not part of `make test`) reports it only when someone runs it. This test
keeps the table in step on every `make test`: every mutant's text occurs
exactly once in its file, and names are unique.
"""
import importlib.util
import os
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_mutants():
    spec = importlib.util.spec_from_file_location(
        "mutate", os.path.join(ROOT, "tests", "mutants", "mutate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.MUTANTS


class MutantsApply(unittest.TestCase):
    def test_every_mutant_applies_once(self):
        for m in load_mutants():
            with self.subTest(mutant=m["name"]):
                with open(os.path.join(ROOT, m["file"]), encoding="utf-8") as f:
                    text = f.read()
                self.assertEqual(text.count(m["old"]), 1,
                                 f"{m['name']}: its text must occur exactly once "
                                 f"in {m['file']}")
                self.assertNotEqual(m["old"], m["new"])

    def test_names_are_unique(self):
        names = [m["name"] for m in load_mutants()]
        self.assertEqual(len(names), len(set(names)))


if __name__ == "__main__":
    unittest.main()
