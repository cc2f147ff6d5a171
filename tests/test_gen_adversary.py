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

    def test_conditional_left_open_is_refused(self):
        # An #if in one state's code and its #endif in another's compiled,
        # and the generated code between them (a whole state's poll, its
        # fall-through guard) silently vanished.
        lines = self.errors("future: f\nstates:\n  a:\n    do: |\n      #if 0\n"
                            "      RETURN(1);\n  b:\n    do: |\n      #endif\n"
                            "      RETURN(0);\n")
        self.assertIn("f.yaml:5:7: error: '#if' is not closed in do", lines)
        self.assertIn("f.yaml:9:7: error: '#endif' without a matching '#if' in do", lines)
        self.assertError("future: f\nstates:\n  a:\n    do: |\n      #ifdef X\n      x();\n"
                         "      #endif\n      # else\n      RETURN(0);\n",
                         "f.yaml:8:7: error: '#else' without a matching '#if' in do")
        self.assertError("future: f\nstates:\n  a:\n    do: |\n      RETURN(0);\n"
                         "      %:ifndef X\n",
                         "f.yaml:6:7: error: '%:ifndef' is not closed in do")

    def test_line_directive_is_refused(self):
        # The generator maps every snippet to the spec with #line; a #line of
        # the spec's own sent the compiler's errors to another file.
        self.assertError("future: f\nstates:\n  a:\n    do: |\n      #line 1 \"x.c\"\n"
                         "      RETURN(0);\n",
                         "f.yaml:5:7: error: '#line' is not allowed in do: the generator "
                         "maps spec text to the spec with #line")
        self.assertError("future: f\nstates:\n  a:\n    do: |\n      # 7 \"x.c\"\n"
                         "      RETURN(0);\n",
                         "f.yaml:5:7: error: '# 7' is not allowed in do: the generator "
                         "maps spec text to the spec with #line")

    def test_macros_stay_in_their_snippet(self):
        # A #define in a snippet reached every line generated after it: with
        # res defined, the next state's `int res = ...` failed in generated
        # code; an #undef of OP, in a snippet, undid the generator's own.
        self.assertError("future: f\nstates:\n  a:\n    do: |\n      #define res 0\n"
                         "      GOTO(b);\n  b:\n    io: nop\n    then: RETURN(res);\n",
                         "f.yaml:5:7: error: '#define res' is not undone in do: a macro "
                         "of spec text ends with it (#undef res at its end)")
        self.assertError("future: f\nstates:\n  a:\n    do: |\n      #undef OP\n"
                         "      RETURN(0);\n",
                         "f.yaml:5:7: error: '#undef OP' without a matching '#define' "
                         "in do: a macro of spec text ends with it")
        path = self.spec("f", "future: f\nstates:\n  a:\n    do: |\n"
                         "      #define TWICE(x) ((x) + (x))\n      int v = TWICE(1);\n"
                         "      #undef TWICE\n      RETURN(v);\n")
        self.assertEqual(self.run_gen(path), (0, ""))

    def test_balanced_conditionals_are_kept(self):
        path = self.spec("f", "future: f\nstates:\n  a:\n    do: |\n      #if defined(X)\n"
                         "      RETURN(1);\n      #elif 1 /* #endif */\n      RETURN(2);\n"
                         "      #else\n      RETURN(3);\n      #endif\n")
        self.assertEqual(self.run_gen(path), (0, ""))

    def test_digraph_brackets_are_brackets(self):
        # C reads <% %> <: :> as { } [ ]: a %> closed the generated poll
        # function, and the compiler blamed the generated code.
        self.assertError("future: f\nstates:\n  a:\n    do: 'RETURN(0); %>'\n",
                         "f.yaml:4:21: error: '%>' without a matching '{' in do")
        self.assertError("future: f\nstates:\n  a:\n    do: 'int a<:2; RETURN(0);'\n",
                         "f.yaml:4:15: error: '<:' is not closed in do")
        # Mixed spellings pair up as they do for the compiler.
        path = self.spec("f", "future: f\nstates:\n  a:\n    do: 'if (1) <% RETURN(0); } RETURN(1);'\n")
        self.assertEqual(self.run_gen(path), (0, ""))


class Bytes(GenTest):
    """What the loader reads before YAML does."""

    def test_invalid_utf8_is_reported_where_it_is(self):
        # It was reported at 1:1, whatever line held the byte.
        path = os.path.join(self.dir, "f.yaml")
        with open(path, "wb") as f:
            f.write(b'future: f\nstates:\n  a:\n    do: "RETURN(0); /* \xc3\xa9\xff */"\n')
        code, err = self.run_gen(path)
        self.assertEqual((code, err.replace(self.dir + "/", "")),
                         (1, "f.yaml:4:25: error: spec is not valid UTF-8: byte 0xff\n"))
        # Past the first 8 KiB (a text-mode read decodes in chunks), and after
        # CRLF line ends.
        with open(path, "wb") as f:
            f.write(b"# " + b"\xc3\xa9" * 9000 + b"\r\nfuture: f\r\nstates: \x80\r\n")
        code, err = self.run_gen(path)
        self.assertEqual((code, err.replace(self.dir + "/", "")),
                         (1, "f.yaml:3:9: error: spec is not valid UTF-8: byte 0x80\n"))


    def test_unicode_line_breaks_are_refused_where_they_are(self):
        # YAML 1.1 (PyYAML) breaks lines at U+0085, U+2028 and U+2029, the C
        # compiler and editors do not: the error (a malformed YAML one, about
        # text that looked fine) was a line too far down, and every #line
        # after such a character in a snippet would have been off by one.
        for ch, name in (("\u2028", "U+2028"), ("\u2029", "U+2029"), ("\x85", "U+0085")):
            path = os.path.join(self.dir, "f.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"future: f\nstates:\n  a:\n    do: |\n      /* a {ch} b */\n"
                        "      RETURN(0);\n")
            code, err = self.run_gen(path)
            self.assertEqual((code, err.replace(self.dir + "/", "")),
                             (1, f"f.yaml:5:12: error: character {name} is a line break to "
                                 "YAML but not to C: write it as an escape\n"))

class OutputType(GenTest):
    """output: types that RETURN cannot store: the compiler's first error
    was in the generated RETURN macro, not at the spec."""

    def check(self, output, col, why):
        self.assertEqual(
            self.errors(f"future: f\noutput: \"{output}\"\nstates:\n  a:\n"
                        "    do: RETURN(0);\n"),
            [f"f.yaml:2:{col}: error: output '{output.strip()}' {why}"])

    def test_void_is_refused(self):
        self.check("void", 9, "is void: a future completes with a value (leave "
                   "output out for int, and RETURN(0))")
        self.check(" void ", 9, "is void: a future completes with a value (leave "
                   "output out for int, and RETURN(0))")

    def test_array_is_refused(self):
        self.check("int[4]", 9, "is an array: C neither assigns nor returns arrays "
                   "(wrap it in a struct)")

    def test_const_is_refused(self):
        why = ("is const: RETURN stores the value into the caller's output (drop the "
               "outer const)")
        self.check("const int", 9, why)
        self.check("int const", 9, why)
        self.check("char *const", 9, why)

    def test_pointers_to_const_are_kept(self):
        for output in ("const char *", "char const *", "int (*)(const char *)",
                       "const char *const *"):
            path = self.spec("f", f"future: f\noutput: \"{output}\"\nstates:\n  a:\n"
                             "    do: RETURN(0);\n")
            self.assertEqual(self.run_gen("--check", path), (0, ""), output)


class ConstMembers(GenTest):
    """A const param, field or local: the generated code assigns every one
    (F_init copies params and runs inits), so the compiler's error was in
    generated code (for a param) or the member could never be set."""

    def test_const_param_is_refused(self):
        self.assertEqual(
            self.errors("future: f\nparams:\n  - {name: n, type: \"const int\"}\nstates:\n"
                        "  a:\n    do: RETURN(self->n);\n"),
            ["f.yaml:3:21: error: param 'n' has type 'const int': the generated code "
             "assigns it (drop the outer const)"])

    def test_const_field_and_local_are_refused(self):
        lines = self.errors("future: f\nfields:\n  - {name: n, type: \"char *const\", "
                            "init: \"0\"}\nstates:\n  a:\n    locals:\n"
                            "      - {name: m, type: \"int const\"}\n"
                            "    do: RETURN(self->n != 0);\n")
        self.assertEqual(lines, [
            "f.yaml:3:21: error: field 'n' has type 'char *const': the generated code "
            "assigns it (drop the outer const)",
            "f.yaml:7:25: error: local 'm' has type 'int const': the generated code "
            "assigns it (drop the outer const)"])

    def test_pointer_to_const_param_is_kept(self):
        path = self.spec("f", "future: f\nparams:\n  - {name: s, type: \"const char *\"}\n"
                         "states:\n  a:\n    do: RETURN(self->s != 0);\n")
        self.assertEqual(self.run_gen(path), (0, ""))


class JoinBranchNames(GenTest):
    """A join branch's result is a local of the state's then, where the
    generated macros use the future's own names: GOTO(b) stores F_S_b, and
    RETURN declares an F_out."""

    def test_branch_named_like_a_state_constant_is_refused(self):
        # It compiled: GOTO(b) then stored the branch's result, not the
        # state, and the next poll resumed in whatever state that number was.
        self.assertEqual(
            self.errors("future: f\nstates:\n  a:\n    join:\n      f_S_b: {io: nop}\n"
                        "      c: {io: nop}\n    then: GOTO(b);\n  b:\n    io: nop\n"
                        "    then: RETURN(res);\n"),
            ["f.yaml:5:7: error: branch name 'f_S_b' is a name the generated code "
             "declares for future 'f'"])

    def test_branch_named_like_the_output_type_is_refused(self):
        self.assertEqual(
            self.errors("future: f\nstates:\n  a:\n    join:\n      f_out: {io: nop}\n"
                        "      c: {io: nop}\n    then: RETURN(f_out + c);\n"),
            ["f.yaml:5:7: error: branch name 'f_out' is a name the generated code "
             "declares for future 'f'"])

    def test_branch_named_like_a_childs_type_is_refused(self):
        # The result of the await branch after it is declared as a
        # copy_file_out, which the io branch's int had hidden: the compiler
        # blamed the generated code.
        self.assertEqual(
            self.errors("future: f\nfields:\n  - {name: k, future: copy_file}\nstates:\n"
                        "  a:\n    join:\n      copy_file_out: {io: nop}\n"
                        "      c: {await: k, args: ['\"a\"', '\"b\"']}\n"
                        "    then: RETURN(copy_file_out + (int)c);\n"),
            ["f.yaml:7:7: error: branch name 'copy_file_out' is a name the generated "
             "code declares for child future 'copy_file'"])


class Positions(GenTest):
    """Errors inside block scalars point at the spec's own column."""

    def test_explicit_indentation_indicator(self):
        # With |2 the text keeps the spaces beyond its indentation, which were
        # counted twice: the column was 4 too far right.
        self.assertEqual(
            self.errors("future: f\nstates:\n  a:\n    do: |2\n          GOTO(nowhere);\n"),
            ["f.yaml:5:16: error: GOTO(nowhere): no state named 'nowhere'"])
        self.assertEqual(
            self.errors("future: f\nstates:\n  a:\n    do: |-1\n\n      RETURN(0);\n"
                        "         GOTO(nowhere);\n"),
            ["f.yaml:7:15: error: GOTO(nowhere): no state named 'nowhere'"])


class FoldedComments(GenTest):
    """YAML folds the lines of a plain, quoted or > value into one: a //
    comment then runs on over the lines after it, and the code on them was
    silently lost (it compiled: self->n++ below never ran)."""

    MSG = ("f.yaml:8:20: error: this // comment would take in the code on the lines "
           "that YAML folds into its line: write the code as a literal block scalar (|)")

    def test_plain_multiline(self):
        self.assertEqual(self.errors(
            "future: f\nfields:\n  - {name: n, type: int, init: \"0\"}\nstates:\n  a:\n"
            "    next: b\n    do: self->n = 2;\n"
            "      self->n = 2; // two\n      self->n++;\n  b:\n    do: RETURN(self->n);\n"),
            [self.MSG])

    def test_folded_block(self):
        self.assertEqual(self.errors(
            "future: f\nfields:\n  - {name: n, type: int, init: \"0\"}\nstates:\n  a:\n"
            "    next: b\n    do: >\n"
            "      self->n = 2; // two\n      self->n++;\n  b:\n    do: RETURN(self->n);\n"),
            [self.MSG])

    def test_quoted_multiline(self):
        # The scan of the first line began at the YAML quote, which it took
        # for a C character literal running to the end of the line.
        self.assertEqual(self.errors(
            "future: f\nfields:\n  - {name: n, type: int, init: \"0\"}\nstates:\n  a:\n"
            "    next: b\n    do: 'self->n = 2;\n"
            "      self->n = 2; // two\n      self->n++;'\n  b:\n    do: RETURN(self->n);\n"),
            [self.MSG])
        self.assertEqual(self.errors(
            "future: f\nfields:\n  - {name: n, type: int, init: \"0\"}\nstates:\n  a:\n"
            "    next: b\n    do: 'self->n = 2; // two\n"
            "      self->n++;'\n  b:\n    do: RETURN(self->n);\n"),
            ["f.yaml:7:23: error: this // comment would take in the code on the lines "
             "that YAML folds into its line: write the code as a literal block scalar (|)"])
        path = self.spec("f", "future: f\nstates:\n  a:\n    do: 'puts(\"http://x\");\n"
                         "      RETURN(0);'\n")
        self.assertEqual(self.run_gen("--check", path), (0, ""))

    def test_comment_on_the_last_line_and_literal_blocks_are_kept(self):
        for do in ("self->n = 2;\n      self->n++; // two\n",
                   "|\n      self->n = 2; // two\n      self->n++;\n",
                   "'self->n = 2; /* two */\n      self->n++;'\n"):
            path = self.spec("f", "future: f\nfields:\n  - {name: n, type: int, init: \"0\"}\n"
                             "states:\n  a:\n    next: b\n    do: " + do +
                             "  b:\n    do: RETURN(self->n);\n")
            self.assertEqual(self.run_gen("--check", path), (0, ""), do)


class OpMacro(GenTest):
    """OP(s) names the request slot of io state s. It pasted s into a member
    name unchecked: a state without one failed in the generated code, and
    a state whose slot had been renamed apart (state a_b's pd__a_b2_op,
    beside state a's join branch b's pd__a_b_op) got the other state's
    slot, which the two states' overlapped storage puts at another offset."""

    def test_op_of_a_missing_state_or_one_without_a_request(self):
        lines = self.errors("future: f\nstates:\n  a:\n    do: |\n      (void)OP(nowhere);\n"
                            "      (void)OP(b);\n      GOTO(b);\n  b:\n    join:\n"
                            "      x: {io: nop}\n      y: {io: nop}\n    then: RETURN(x + y);\n")
        self.assertEqual(lines, [
            "f.yaml:5:16: error: OP(nowhere): no state named 'nowhere'",
            "f.yaml:6:16: error: OP(b): state 'b' is not an io state with one "
            "single-shot request (OP names that request's slot)"])

    def test_op_names_its_own_states_slot(self):
        path = self.spec("f", "future: f\nstates:\n  a:\n    join:\n      x: {io: nop}\n"
                         "      b: {io: nop}\n    then: GOTO(a_b);\n  a_b:\n    io: nop\n"
                         "    then: |\n      (void)OP(a_b);\n      RETURN(res);\n")
        self.assertEqual(self.run_gen(path), (0, ""))
        with open(os.path.join(self.out, "f.h")) as f:
            header = f.read()
        with open(os.path.join(self.out, "f.c")) as f:
            code = f.read()
        # The join's branch b took pd__a_b_op first; a_b's own slot is another.
        self.assertIn("pd__op pd__a_b_op;", header)
        self.assertIn("pd__op pd__a_b2_op;", header)
        self.assertIn("#define PD__OP_a_b pd__a_b2_op\n", code)
        self.assertIn("#define OP(s) (&self->PD__OP_##s)\n", code)


class MacroNamedStates(GenTest):
    """A state's name goes through GOTO's argument, which the preprocessor
    expands: a state named after a macro (linux is 1 under gnu11, EOF is
    (-1)) was accepted and failed in generated code."""

    def test_state_named_after_a_macro_is_refused(self):
        self.assertEqual(
            self.errors("future: f\nstates:\n  a:\n    io: nop\n    then: GOTO(linux);\n"
                        "  linux:\n    do: RETURN(0);\n"),
            ["f.yaml:6:3: error: state name 'linux' is a macro of the C compiler or "
             "headers; choose another name"])
        self.assertEqual(
            self.errors("future: f\nstates:\n  a:\n    io: nop\n    then: GOTO(EOF);\n"
                        "  EOF:\n    do: RETURN(0);\n"),
            ["f.yaml:6:3: error: state name 'EOF' is a macro of the C compiler or "
             "headers; choose another name"])
