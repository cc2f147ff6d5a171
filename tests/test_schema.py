"""docs/polldrop-spec.schema.json, the spec language for editors, in step
with the generator: it is scripts/spec_schema.py's output, every spec in the
repository validates against it, and bad specs from the generator's own
tests (tests/test_gen.py) are rejected by it too.

Specs are read as a YAML 1.2 editor reads them (only true/false are
booleans; `off` stays a string), since that is what the schema meets there.
"""
import ast
import glob
import importlib.util
import json
import os
import re
import textwrap
import unittest

import yaml

try:
    import jsonschema
except ImportError:  # reported by every test, with the fix
    jsonschema = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(ROOT, "docs", "polldrop-spec.schema.json")

# Bad specs of tests/test_gen.py that the schema must reject as well; the
# rest (GOTO targets, duplicate names across lists, child types, names the
# C headers already declare, which the generator finds by compiling a probe)
# need the generator.
BAD_FIXTURES = [
    "test_unknown_top_level_key", "test_missing_future_and_states", "test_bad_identifier",
    "test_c_keyword", "test_reserved_prefix", "test_unknown_io_op",
    "test_unknown_io_argument", "test_missing_required_argument",
    "test_timeout_needs_ms_or_ns", "test_teardown_without_drop", "test_when_without_next",
    "test_io_without_then_or_next", "test_two_actions", "test_unknown_branch_key",
    "test_select_branch_without_then", "test_select_has_no_state_then",
    "test_join_branch_with_then", "test_branch_needs_one_action", "test_timeout_ms_on_await",
]


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML with the YAML 1.2 core schema's implicit types."""


Yaml12Loader.yaml_implicit_resolvers = {}
for tag, pattern, first in [
        ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
        ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
        ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                  r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+.0123456789"),
]:
    Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(pattern),
                                       list(first))


def load12(text):
    return yaml.load(text, Loader=Yaml12Loader)


def gen_fixtures():
    """The first spec text each named test of tests/test_gen.py feeds the generator."""
    with open(os.path.join(ROOT, "tests", "test_gen.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or fn.name not in BAD_FIXTURES:
            continue
        for call in ast.walk(fn):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr in ("assertError", "errors") and call.args
                    and isinstance(call.args[0], ast.Constant)
                    and isinstance(call.args[0].value, str)):
                found[fn.name] = textwrap.dedent(call.args[0].value)
                break
    return found


def repo_specs():
    pats = ["specs/*.yaml", "tests/specs/*.yaml", "examples/*.yaml", "examples/*/*.yaml",
            "examples/*/specs/*.yaml"]
    return sorted(p for pat in pats for p in glob.glob(os.path.join(ROOT, pat)))


class Schema(unittest.TestCase):
    def setUp(self):
        if jsonschema is None:
            self.fail("python3-jsonschema is needed (make deps installs it)")
        with open(SCHEMA, encoding="utf-8") as f:
            self.text = f.read()
        self.schema = json.loads(self.text)
        self.v = jsonschema.Draft7Validator(self.schema)

    def test_is_a_draft7_schema(self):
        jsonschema.Draft7Validator.check_schema(self.schema)

    def test_is_what_the_generator_tables_give(self):
        spec = importlib.util.spec_from_file_location(
            "spec_schema", os.path.join(ROOT, "scripts", "spec_schema.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        self.assertEqual(self.text, mod.dump(mod.schema()) + "\n",
                         "docs/polldrop-spec.schema.json is stale: run make schema")

    def test_every_spec_in_the_repository_validates(self):
        specs = repo_specs()
        self.assertGreater(len(specs), 20)
        for path in specs:
            with self.subTest(spec=os.path.relpath(path, ROOT)):
                with open(path, encoding="utf-8") as f:
                    doc = load12(f.read())
                errs = [f"{list(e.absolute_path)}: {e.message}" for e in self.v.iter_errors(doc)]
                self.assertEqual(errs, [])

    def test_bad_specs_of_the_generator_tests_are_rejected(self):
        fixtures = gen_fixtures()
        self.assertEqual(sorted(set(BAD_FIXTURES) - set(fixtures)), [],
                         "these tests of tests/test_gen.py lost their spec text")
        for name in BAD_FIXTURES:
            with self.subTest(fixture=name):
                self.assertFalse(self.v.is_valid(load12(fixtures[name])))

    def test_the_generator_fixture_that_is_fine_is_accepted(self):
        # The schema is not simply rejecting everything.
        from tests.test_gen import GOOD
        self.assertTrue(self.v.is_valid(load12(GOOD)))

    def test_yaml_1_2_reading(self):
        self.assertEqual(load12("a: off\nb: 0\nc: true\nd:\n"),
                         {"a": "off", "b": 0, "c": True, "d": None})

    def test_readme_and_spec_language_show_the_editor_line(self):
        for page in ("README.md", os.path.join("docs", "spec-language.md")):
            with open(os.path.join(ROOT, page), encoding="utf-8") as f:
                self.assertTrue("# yaml-language-server: $schema=" in f.read(),
                                f"{page} does not show the yaml-language-server line")


if __name__ == "__main__":
    unittest.main()
