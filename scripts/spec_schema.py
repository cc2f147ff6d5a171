"""Writes docs/polldrop-spec.schema.json: the spec language as a JSON Schema.

Usage: python3 scripts/spec_schema.py [OUT.json]   (`make schema`)

The schema is derived from the generator's own tables (the keys of a spec,
of a state, of a branch and of a variable; the io ops and their arguments;
reserved names), so that editors see the language the validator accepts.
tests/test_schema.py checks that the committed file is this script's output,
that every spec in the repository validates, and that bad specs from the
generator's tests are rejected.

JSON Schema cannot say everything the validator checks (GOTO targets, unique
names across params, fields and locals, reachability, child futures' types):
the generator remains the authority, the schema catches the rest while typing.
Scalars are C text to the generator, so wherever C goes the schema also
accepts the numbers and booleans a YAML editor reads from `0` or `true`.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gen import validate  # noqa: E402
from gen.ops import OPS  # noqa: E402

DRAFT = "http://json-schema.org/draft-07/schema#"


def in_step(props, keys, what):
    """Stops when the validator knows keys this script does not describe."""
    if set(props) != set(keys):
        sys.exit(f"spec_schema.py: the keys of {what} changed in the generator "
                 f"({', '.join(sorted(set(props) ^ set(keys)))}): describe them here")


def identifier():
    """A C identifier that is not a keyword and not a reserved pd_ name."""
    return {"type": "string", "pattern": "^(?![pP][dD]_)[A-Za-z_][A-Za-z0-9_]*$",
            "maxLength": validate.MAX_IDENT,
            "not": {"enum": sorted(validate.C_KEYWORDS)}}


def ident(what, reserved=()):
    """An identifier for what, also none of reserved."""
    s = {"allOf": [{"$ref": "#/definitions/identifier"}],
         "description": f"{what}: a C identifier (not a keyword; pd_ is reserved)"}
    if reserved:
        s["not"] = {"enum": sorted(reserved)}
    return s


def code(what, allow_empty=False):
    s = {"type": ["string", "number", "boolean"], "description": what}
    if not allow_empty:
        s["pattern"] = r"\S"
    else:
        s["type"] = ["string", "number", "boolean", "null"]
    return s


def var(what, allow_child=True, allow_init=True, allow_array=True):
    keys = [k for k in validate.VAR_KEYS
            if (k != "future" or allow_child) and (k != "init" or allow_init)
            and (k != "count" or (allow_child and what == "field"))
            and (k != "owns" or what in ("param", "field"))]
    reserved = validate.PARAM_RESERVED if what == "param" else validate.SNIPPET_NAMES
    props = {"name": ident(f"{what} name", reserved)}
    ctype = code("C type; a trailing [N] makes an array")
    if not allow_array:
        ctype = dict(ctype, **{"not": {"type": "string", "pattern": r"\]\s*$"},
                     "description": "C type (not an array: C passes arrays as pointers)"})
    props["type"] = ctype
    if allow_init:
        props["init"] = code("initial value, a C expression")
    if allow_child:
        props["future"] = {"anyOf": [ident("the child future's type: another spec"),
                                     {"enum": sorted(validate.BUILTIN_CHILDREN),
                                      "description": "a child the runtime provides "
                                                     "(pd_join: a join handle)"}]}
    if "count" in keys:
        props["count"] = {"description": "an array of this many child futures",
                          "anyOf": [{"type": "integer", "minimum": 1,
                                     "maximum": validate.MAX_COUNT},
                                    {"type": "string", "pattern": "^[0-9]+$"}]}
    if "owns" in keys:
        props["owns"] = {"enum": list(validate.OWNS),
                         "description": "fd: an int descriptor the future closes on every "
                                        "destruction path while >= 0; file: a path "
                                        "(char[N] or char *) the future removes unless "
                                        "KEEP(name) said it is complete, once an openat of "
                                        "it succeeded"}
    in_step(props, keys, f"a {what}")
    plain = {"required": ["name", "type"]}
    if allow_child:
        # A child has a future and no type or init; a plain one has a type.
        plain["not"] = {"anyOf": [{"required": ["future"]}, {"required": ["count"]}]}
        child = {"required": ["name", "future"],
                 "not": {"anyOf": [{"required": ["type"]}, {"required": ["init"]}]}}
        alts = {"oneOf": [plain, child]}
    else:
        alts = plain
    return dict({"type": "object", "additionalProperties": False,
                 "propertyNames": {"enum": keys}, "properties": props}, **alts)


def io_rules():
    """One if/then per op: its arguments, which are required."""
    rules = []
    for op in OPS.values():
        names = op.arg_names()
        args = {"type": "object", "additionalProperties": False,
                "properties": {a: code(f"argument {a}"
                                       + (f" (default {d})" if d is not None else ""))
                               for a, d in op.args}}
        if op.name == "timeout":
            args["oneOf"] = [{"required": ["ms"]}, {"required": ["ns"]}]
        elif op.group:
            # group: (a provided buffer) instead of buf and len.
            args["properties"]["group"] = code("a pd_bufgroup *: the kernel picks "
                                               "the buffer")
            plain = [a for a, d in op.args if d is None]
            args["oneOf"] = [{"required": ["group"],
                              "not": {"anyOf": [{"required": ["buf"]},
                                                {"required": ["len"]}]}},
                             {"required": plain, "not": {"required": ["group"]}}]
        else:
            required = [a for a, d in op.args if d is None]
            if required:
                args["required"] = required
        then = {"properties": {"args": args}}
        if not op.multishot:
            then["not"] = {"properties": {"multishot": {"enum": [True, "true", "yes"]}},
                           "required": ["multishot"]}
        if not names:
            then["properties"]["args"] = {"type": "object", "maxProperties": 0}
        elif args.get("required") or "oneOf" in args:
            then["required"] = ["args"]
        rules.append({"if": {"properties": {"io": {"const": op.name}},
                             "required": ["io"]},
                      "then": then})
    return rules


def branch(kind):
    keys = list(validate.BRANCH_KEYS)
    s = {"type": "object", "additionalProperties": False,
         "propertyNames": {"enum": keys},
         "properties": {
             "io": {"enum": sorted(OPS), "description": "an io_uring operation"},
             "args": {},
             "await": ident("a child future field or local of this state"),
             "then": code("C code run with res (io) or out (await)"),
             "timeout_ms": code("a linked timeout in milliseconds (io only)"),
             "multishot": multishot(),
         },
         "oneOf": [{"required": ["io"]}, {"required": ["await"]}],
         "dependencies": {"timeout_ms": ["io"], "multishot": ["io"]},
         "allOf": [{"$ref": "#/definitions/io_args"},
                   {"$ref": "#/definitions/await_args"}]}
    in_step(s["properties"], keys, "a branch")
    if kind == "select":
        s["required"] = ["then"]
    else:
        s["not"] = {"required": ["then"]}
    return s


def multishot():
    return {"enum": [True, False, "true", "false", "yes", "no"],
            "description": "true: one request, then runs once per completion "
                           "(accept; recv with group)"}


def await_args():
    return {"if": {"required": ["await"]},
            "then": {"properties": {"args": {"type": "array",
                                             "items": code("an argument of the child's init")}}}}


def branches(kind):
    return {"type": "object", "minProperties": 1,
            "maxProperties": validate.MAX_BRANCHES,
            "propertyNames": ident("branch name", sorted(validate.GENERATED_LOCALS)),
            "additionalProperties": {"$ref": f"#/definitions/{kind}_branch"}}


def state(phase):
    keys = list(validate.STATE_KEYS)
    none_of = lambda *ks: {"not": {"anyOf": [{"required": [k]} for k in ks]}}  # noqa: E731
    s = {"type": "object", "additionalProperties": False,
         "propertyNames": {"enum": keys},
         "properties": {
             "doc": {"type": "string"},
             "do": code("C code"),
             "io": {"enum": sorted(OPS), "description": "an io_uring operation"},
             "args": {},
             "await": ident("a child future field or local of this state"),
             "join": {"anyOf": [branches("join"),
                                ident("an array of child futures: wait for all")]},
             "select": {"anyOf": [branches("select"),
                                  ident("an array of child futures: the first to finish")]},
             "then": code("C code run after the action"),
             "when": code("a guard, a C expression; when false the state is skipped"),
             "next": ident("the state taken when the code falls off its end"),
             "locals": {"type": "array", "items": var("local")},
             "timeout_ms": code("milliseconds: a linked timeout on io; one deadline "
                                "over a whole await, join or select (then sees "
                                "timed_out)"),
             "multishot": multishot(),
         },
         "oneOf": [{"required": [a]} for a in validate.ACTIONS],
         "dependencies": {"multishot": ["io"]},
         "allOf": [
             {"$ref": "#/definitions/io_args"},
             {"$ref": "#/definitions/await_args"},
             {"if": {"required": ["do"]},
              "then": none_of("then", "args", "timeout_ms", "multishot")},
             {"if": {"required": ["join"]}, "then": none_of("args", "multishot")},
             # A select's state-level then is its deadline's, and needs one.
             {"if": {"required": ["select"],
                     "properties": {"select": {"type": "object"}}},
              "then": {"allOf": [none_of("args", "multishot"),
                                 {"anyOf": [{"required": ["then", "timeout_ms"]},
                                            none_of("then", "timeout_ms")]}]}},
         ]}
    in_step(s["properties"], keys, "a state")
    if phase == "run":
        s["dependencies"]["when"] = ["next"]
        # io, await and join need somewhere to go: their then, or next.
        s["allOf"].append({
            "if": {"anyOf": [{"required": ["io"]}, {"required": ["await"]},
                             {"required": ["join"]}]},
            "then": {"anyOf": [{"required": ["then"]}, {"required": ["next"]}]}})
    return s


def states(phase, what):
    return {"type": "object", "minProperties": 1, "description": what,
            "propertyNames": ident("state name"),
            "additionalProperties": {"$ref": f"#/definitions/{phase}_state"}}


def schema():
    libc = getattr(validate, "LIBC_NAMES", ())
    props = {
        "future": ident("the future's name, prefix of every generated name",
                        sorted(set(libc) | validate.GENERATED_LOCALS)),
        "doc": {"type": "string", "description": "copied into the generated header"},
        "include": {"type": "array", "items": {
            "type": "string", "pattern": r'^\s*(<[^<>"\s]+>|"[^"\s]+")\s*$',
            "description": '<header.h> or "header.h"'}},
        "output": code("C type of the result (default int)"),
        "params": {"type": "array", "items": var("param", allow_child=False,
                                                 allow_init=False, allow_array=False)},
        "fields": {"type": "array", "items": var("field")},
        "states": states("run", "run states; the first is the initial state"),
        "teardown": states("teardown", "teardown states, run by an async drop"),
        "drop": code("sync destructor code, run last on every path", allow_empty=True),
        "send": {"enum": [True, False, "true", "false", "yes", "no"],
                 "description": "true: the future may be started on another thread's "
                                "runtime with F_spawn_on"},
    }
    in_step(props, validate.TOP_KEYS, "a spec")
    return {
        "$schema": DRAFT,
        "title": "polldrop future spec",
        "description": "One future as a state machine: run states, teardown states "
                       "and drop code; generated to C by polldrop-gen. See "
                       "docs/spec-language.md.",
        "type": "object",
        "additionalProperties": False,
        "required": ["future", "states"],
        "dependencies": {"teardown": ["drop"]},
        "properties": props,
        "definitions": {
            "identifier": identifier(),
            "run_state": state("run"),
            "teardown_state": state("teardown"),
            "join_branch": branch("join"),
            "select_branch": branch("select"),
            "io_args": {"allOf": io_rules()},
            "await_args": await_args(),
        },
    }


def dump(v, indent=0):
    """JSON with two-space indentation; what fits on a line stays on one."""
    flat = json.dumps(v)
    if not isinstance(v, (dict, list)) or len(flat) + indent <= 88:
        return flat
    pad = " " * (indent + 2)
    if isinstance(v, list) and not any(isinstance(x, (dict, list)) for x in v):
        lines, line = [], ""
        for x in map(json.dumps, v):
            if line and len(pad) + len(line) + len(x) + 2 > 88:
                lines.append(line.rstrip())
                line = ""
            line += x + ", "
        lines.append(line.rstrip(", "))
        return "[\n" + "\n".join(pad + l for l in lines) + "\n" + " " * indent + "]"
    if isinstance(v, list):
        items = [pad + dump(x, indent + 2) for x in v]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    items = [f"{pad}{json.dumps(k)}: {dump(x, indent + 2)}" for k, x in v.items()]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"


def main(argv):
    text = dump(schema()) + "\n"
    if len(argv) > 1:
        with open(argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
