"""The documentation's own promises: every relative link in README.md,
docs/*.md and the examples' READMEs names a file of the repository (and a
`#fragment` a heading of that file, as GitHub spells its anchors), the
README's first commands are the two it promises, `make demo` and
`make test`, and design.md's glossary defines the words the others use. Moving a section from one page to another breaks a link that
only a reader would otherwise find.
"""
import glob
import os
import re
import unittest

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# [text](target) and ![alt](target), outside code blocks and code spans.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def pages():
    """The Markdown files whose links are checked, relative to ROOT."""
    found = ["README.md"]
    found += sorted(glob.glob("docs/*.md", root_dir=ROOT))
    found += sorted(glob.glob("examples/**/README.md", root_dir=ROOT, recursive=True))
    return found


def prose(text):
    """text without its code blocks and code spans."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(path):
    """The anchors GitHub gives the headings of the Markdown file at path."""
    with open(path, encoding="utf-8") as f:
        text = FENCE.sub("", f.read())
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def broken_links(page, text=None):
    """The links of page (relative to ROOT; its text read from there unless
    given) that name no file or heading."""
    if text is None:
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            text = f.read()
    text = prose(text)
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue        # http:, https:, mailto:
        path, _, frag = target.partition("#")
        dest = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) \
            if path else os.path.join(ROOT, page)
        if not dest.startswith(ROOT + os.sep) or not os.path.exists(dest):
            bad.append(f"{page}: {target}: no such file")
        elif frag and dest.endswith(".md") and frag not in anchors(dest):
            bad.append(f"{page}: {target}: no such heading")
    return bad


class Links(unittest.TestCase):
    def test_every_relative_link_resolves(self):
        bad = [b for page in pages() for b in broken_links(page)]
        self.assertEqual(bad, [])

    def test_the_check_finds_a_broken_link(self):
        # The check itself: a page in docs/ that links a missing file and a
        # missing heading is reported twice; a good link, a link to a
        # heading of the page itself and a code span are not.
        page = os.path.join("docs", "api.md")
        text = ("[a](no-such-file.md), [b](design.md#no-such-heading),"
                " [c](design.md), [d](design.md#5-invariants),"
                " [e](#threads), `[f](x.md)`\n")
        self.assertEqual(broken_links(page, text),
                         [f"{page}: no-such-file.md: no such file",
                          f"{page}: design.md#no-such-heading: no such heading"])

    def test_design_has_the_glossary(self):
        # The words the other documents lean on are defined in one place.
        with open(os.path.join(ROOT, "docs", "design.md"), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("8-glossary", anchors(os.path.join(ROOT, "docs", "design.md")))
        glossary = text[text.index("## 8. Glossary"):]
        for term in ("Quiesce", "Turn", "Op slot", "Suspension point", "Forced teardown"):
            self.assertTrue(f"- **{term}.**" in glossary, f"{term} is not in the glossary")


class Readme(unittest.TestCase):
    def test_first_commands_are_demo_and_test(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            text = f.read()
        first = re.search(r"^```sh\n(.*?)^```", text, re.S | re.M).group(1)
        commands = [line.split("#")[0].strip() for line in first.splitlines()]
        self.assertEqual(commands[:2], ["make demo", "make test"])

    def test_quotes_the_library_read_file(self):
        # The README's spec is specs/read_file.yaml as the library builds
        # it (without its doc block), and shows the descriptor owned
        # (owns: fd) rather than closed by hand in drop code.
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            text = f.read()
        with open(os.path.join(ROOT, "specs", "read_file.yaml"), encoding="utf-8") as f:
            spec = f.read()
        quoted = re.search(r"^```yaml\n(future: read_file\n.*?)^```", text, re.S | re.M)
        self.assertIsNotNone(quoted, "README quotes no read_file spec")
        self.assertEqual(quoted.group(1), re.sub(r"^doc: \|\n(?:  .*\n)+", "", spec, flags=re.M))
        fields = {f["name"]: f for f in yaml.safe_load(spec)["fields"]}
        self.assertEqual(fields["fd"].get("owns"), "fd")
        self.assertEqual(yaml.safe_load(spec)["drop"], "")


if __name__ == "__main__":
    unittest.main()
