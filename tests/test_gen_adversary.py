"""Generator tests from the adversary of the spec language: C text and
bytes that the generator took and turned into C whose errors (or worse,
whose silent meaning) no longer pointed at the spec. Golden messages, as
in test_gen."""
import os
import unittest

from tests.test_gen import GenTest


class SnippetLexing(GenTest):
    """Snippet text that would change the generated code around it."""

    def test_unterminated_comment_is_refused(self):
        # A /* left open swallowed the generated code after the snippet, and
        # the compiler blamed spec lines that do not exist.
        self.assertError("future: f\nstates:\n  a:\n    do: 'RETURN(0); /* open'\n",
                         "f.yaml:4:21: error: '/*' is not closed in do")
        self.assertError("future: f\nstates:\n  a:\n    when: |\n      x /* a\n"
                         "      b\n    next: a\n    do: RETURN(0);\n",
                         "f.yaml:5:9: error: '/*' is not closed in when")
