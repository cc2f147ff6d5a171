# polldrop: `make gen`, `make`, `make test`, `make demo`, `make bench`.
# Quiet by default; `make V=1` shows every command.

CC ?= cc
# Parallel by default, one job per CPU (`make -j1` or any -jN overrides it).
NPROC := $(shell nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
MAKEFLAGS += -j$(NPROC)
# `make clean all` and the like: clean first, then build.
ifneq ($(filter clean,$(MAKECMDGOALS)),)
.NOTPARALLEL:
endif
# The generator's interpreter: the first python3 that has PyYAML and Jinja2,
# and jsonschema for the tests of the spec schema.
# Found once per make (`?=` alone would make a recursive variable, and
# every use would start the interpreters again), by finding the modules
# without importing them (jsonschema alone takes a third of a second).
# PYTHON is the interpreter itself (its sys.executable), not a version
# manager's shim that finds it (a tenth of a CPU-second every start), and
# exported: the makes the tests run, and scripts/deps.sh, use it as found.
HAS_PY_MODS := -c 'import importlib.util as u, sys; \
	all(u.find_spec(m) for m in ("yaml", "jinja2", "jsonschema")) or sys.exit(1); \
	print(sys.executable or sys.argv[1])'
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3 /usr/bin/python3; do \
	$$p $(HAS_PY_MODS) $$p 2>/dev/null && exit 0; done; \
	echo /usr/bin/python3)
endif
export PYTHON

# The generator keeps its compiled templates here (gen/render.py): every
# run of it, the tests' included, loads them instead of compiling them again.
export POLLDROP_GEN_CACHE ?= $(CURDIR)/build/gen-cache

WARN     := -std=gnu11 -Wall -Wextra -Werror
CFLAGS   ?= -O2 -g
# The sanitized build is also the checked one: PD_CHECKED keeps a registry of
# live op slots and aborts on a completion for a dead one (checked.c).
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=all -DPD_CHECKED
SANFLAGS := -O1 -g $(SANITIZE)
# The sanitized runner's code other than the runtime and the harness
# (tests/*.c, and every future: the library's, the test specs', the
# examples' and httpd's) is compiled at -O0, in half the time -O1 takes
# under the sanitizers: the plain build compiles the same files optimised,
# with the warnings only an optimising compile gives, and the runs' CPU time
# grows by about 3% (it goes to the runtime, the kernel and the sanitizers'
# own work): 3 CPU-s against 8 of compiling. The runtime and the harness
# stay at -O1: the runtime is where the runs' time goes, and the harness's
# malloc runs before the sanitizer's shadow is mapped, which an -O0 build
# would check.
SANTESTFLAGS := -O0 -g $(SANITIZE)
# The plain runner's tests/*.c and the futures of tests/specs are compiled
# at -O1, in two thirds of the time -O2 takes: the flow analysis behind
# -Wmaybe-uninitialized and the like runs at -O1 already, and the test code
# is not what is measured (the runtime and the library's and examples'
# futures stay at $(CFLAGS); the benchmark compiles the three test specs it
# links again at $(CFLAGS), into build/obj/bench).
TESTFLAGS    := -O1 -g
INC      := -Iruntime -Ibuild/gen -Ispecs
URING     = $(shell pkg-config --libs liburing 2>/dev/null || echo -luring)
CHECK     = $(shell pkg-config --cflags --libs check)
UV        = $(shell pkg-config --libs libuv 2>/dev/null || echo -luv)
SECCOMP   = $(shell pkg-config --libs libseccomp 2>/dev/null || echo -lseccomp)

ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-6s %s\n' '$(1)' '$(2)'
endif

SPECS      := $(wildcard specs/*.yaml)
NAMES      := $(patsubst specs/%.yaml,%,$(SPECS))
TEST_SPECS := $(wildcard tests/specs/*.yaml)
TEST_NAMES := $(patsubst tests/specs/%.yaml,%,$(TEST_SPECS))
GEN_DEPS   := $(wildcard gen/*.py) $(wildcard templates/*.j2)

# The runtime, one concern per file (docs/design.md, "Source layout").
RT_MODS  := setup checked complete multishot task loop children thread
RT_OBJ   := $(RT_MODS:%=build/obj/%.o)
RT_OBJ_ASAN := $(RT_MODS:%=build/asan/%.o)
# What generated code includes (installed): polldrop.h includes the rest.
RT_HDR   := runtime/polldrop.h runtime/pd_internal.h runtime/pd_prep.h runtime/pd_multishot.h \
            runtime/pd_children.h runtime/list.h
# The runtime's own headers (not installed): its shared declarations and
# its calls to the engine seam. harness_hooks.h is installed with harness.h.
RT_INT   := runtime/rt_internal.h runtime/ring.h runtime/engine.h runtime/harness_hooks.h \
            runtime/bufwin.h
# The epoll engine (runtime/engine_epoll*.c), behind the seam of engine.h.
EP_SRC   := $(wildcard runtime/engine_epoll*.c) runtime/engine_ring.c
EP_HDR   := runtime/engine.h runtime/engine_ring.h runtime/engine_epoll.h runtime/list.h
# The simulator engine (runtime/engine_sim*.c), which uses the epoll engine's ops.
# The engines include polldrop.h too (struct pd_runtime): they depend on RT_HDR.
EP_SRC   += $(wildcard runtime/engine_sim*.c)
EP_HDR   += runtime/engine_sim.h
EP_OBJ      := $(EP_SRC:runtime/%.c=build/obj/%.o)
EP_OBJ_ASAN := $(EP_SRC:runtime/%.c=build/asan/%.o)
# The harness library: runtime/harness.c and the allocation counter.
HARNESS  := harness harness_alloc
TEST_SRC := $(wildcard tests/*.c)
TEST_HDR := $(wildcard tests/*.h)
# The examples' headers, which the tests include (-I of each example).
EX_HDR   := $(wildcard examples/*/*.h)
EX_SPECS := $(wildcard examples/*.yaml)
EX_NAMES := $(patsubst examples/%.yaml,%,$(EX_SPECS))

GEN_C      := $(NAMES:%=build/gen/%.c)
GEN_TEST_C := $(TEST_NAMES:%=build/gen-test/%.c)
GEN_EX_C   := $(EX_NAMES:%=build/gen-ex/%.c)

# httpd (examples/httpd): its specs, generated into build/gen-httpd, and its
# protocol module; the Check runner links them too, to test the server's
# futures directly. Debian's http-parser has no pkg-config file.
HTTPD_SPECS    := $(wildcard examples/httpd/*.yaml)
HTTPD_NAMES    := $(patsubst examples/httpd/%.yaml,%,$(HTTPD_SPECS))
HTTPD_INC      := -Iexamples/httpd -Ibuild/gen-httpd
HTTPD_OBJ      := build/obj/httpd/http.o build/obj/httpd/server.o $(HTTPD_NAMES:%=build/obj/gen-httpd/%.o)
HTTPD_OBJ_ASAN := build/asan/httpd/http.o build/asan/httpd/server.o $(HTTPD_NAMES:%=build/asan/gen-httpd/%.o)
HTTP_PARSER    := -lhttp_parser

# The echo server and client (examples/echo, docs/echo.md): their specs,
# generated into build/gen-echo, and echo_link.h beside them; the Check
# runner and the benchmark link their futures too.
ECHO_SPECS     := $(wildcard examples/echo/*.yaml)
ECHO_NAMES     := $(patsubst examples/echo/%.yaml,%,$(ECHO_SPECS))
ECHO_INC       := -Iexamples/echo -Ibuild/gen-echo
ECHO_OBJ       := $(ECHO_NAMES:%=build/obj/gen-echo/%.o)
ECHO_OBJ_ASAN  := $(ECHO_NAMES:%=build/asan/gen-echo/%.o)

# The small examples (examples/dcopy, examples/lines, docs/examples.md): each
# is build/NAME from examples/NAME/NAME.c and the specs beside it, generated
# into build/gen-NAME; the Check runner links their futures too.
SMALL          := dcopy lines
SMALL_INC      := $(SMALL:%=-Ibuild/gen-%)
SMALL_STAMPS   := $(SMALL:%=build/gen-%/.stamp)
small_names     = $(patsubst examples/$(1)/%.yaml,%,$(wildcard examples/$(1)/*.yaml))
SMALL_OBJ      := $(foreach e,$(SMALL),$(patsubst %,build/obj/gen-$(e)/%.o,$(call small_names,$(e))))
SMALL_OBJ_ASAN := $(foreach e,$(SMALL),$(patsubst %,build/asan/gen-$(e)/%.o,$(call small_names,$(e))))

.PHONY: FORCE soak mutate explore all gen stats deps deps-bench bench-httpd bench-chart test test-py test-c \
        test-c-epoll test-c-sim fuzz demo bench \
        valgrind clean \
        install uninstall schema diagrams deps-diagrams ops-doc
.DELETE_ON_ERROR:

all: build/libpolldrop.a build/libpolldrop_harness.a build/demo build/echo_server build/echo_client \
     build/httpd $(SMALL:%=build/%)

deps:
	$(Q)PYTHON=$(PYTHON) sh scripts/deps.sh

deps-bench:
	$(Q)PYTHON=$(PYTHON) sh scripts/deps.sh bench

deps-diagrams:
	$(Q)PYTHON=$(PYTHON) sh scripts/deps.sh diagrams

# --- generation: one stamp per spec directory (children cross files) ---
#
# build/list/DIR holds the names of DIR's specs and is rewritten only when
# they change, so a spec deleted from a directory regenerates it too. The
# library's generation starts from empty output directories: nothing a
# deleted spec left in build/gen, build/obj/gen or build/asan/gen can be
# included, compiled, linked or archived.

gen: build/gen/.stamp

build/list/specs:    LIST := $(NAMES)
build/list/tests:    LIST := $(TEST_NAMES)
build/list/examples: LIST := $(EX_NAMES)
build/list/httpd:    LIST := $(HTTPD_NAMES)
build/list/echo:     LIST := $(ECHO_NAMES)
build/list/%: FORCE
	$(Q)mkdir -p $(@D)
	$(Q)printf '%s\n' $(LIST) | cmp -s - $@ || printf '%s\n' $(LIST) >$@

build/gen/.stamp: $(SPECS) build/list/specs $(GEN_DEPS) | deps
	$(call say,GEN,specs/)
	$(Q)rm -rf build/gen build/obj/gen build/asan/gen
	$(Q)$(PYTHON) -m gen -o build/gen $(SPECS)
	$(Q)touch $@

# Each future's sizeof next to the size it would have without overlapping states.
stats: build/gen/.stamp build/gen-test/.stamp build/gen-echo/.stamp
	$(Q)$(PYTHON) -m gen --stats -o build/gen $(SPECS)
	$(Q)CPPFLAGS="-Itests -Ibuild/gen $(shell pkg-config --cflags check)" \
	    $(PYTHON) -m gen --stats -o build/gen-test -I specs $(TEST_SPECS)
	$(Q)CPPFLAGS="-Iexamples/echo -Ibuild/gen" \
	    $(PYTHON) -m gen --stats -o build/gen-echo -I specs $(ECHO_SPECS)

build/gen-test/.stamp: $(TEST_SPECS) $(SPECS) build/list/tests build/list/specs $(GEN_DEPS) | deps
	$(call say,GEN,tests/specs/)
	$(Q)rm -rf build/gen-test
	$(Q)$(PYTHON) -m gen -o build/gen-test -I specs $(TEST_SPECS)
	$(Q)touch $@

build/gen-ex/.stamp: $(EX_SPECS) $(SPECS) build/list/examples build/list/specs $(GEN_DEPS) | deps
	$(call say,GEN,examples/)
	$(Q)rm -rf build/gen-ex
	$(Q)$(PYTHON) -m gen -o build/gen-ex -I specs $(EX_SPECS)
	$(Q)touch $@

$(GEN_C): build/gen/.stamp
$(GEN_TEST_C): build/gen-test/.stamp
$(GEN_EX_C): build/gen-ex/.stamp
$(HTTPD_NAMES:%=build/gen-httpd/%.c): build/gen-httpd/.stamp
$(ECHO_NAMES:%=build/gen-echo/%.c): build/gen-echo/.stamp

# --- the runtime library ---

$(RT_OBJ): build/obj/%.o: runtime/%.c $(RT_HDR) $(RT_INT) | deps
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(CFLAGS) -Iruntime -c $< -o $@

$(EP_OBJ): build/obj/%.o: runtime/%.c $(EP_HDR) $(RT_HDR) | deps
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(CFLAGS) -Iruntime -c $< -o $@

$(EP_OBJ_ASAN): build/asan/%.o: runtime/%.c $(EP_HDR) $(RT_HDR) | deps
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(SANFLAGS) -Iruntime -c $< -o $@

# The library futures (every spec in specs/, and nothing else) come compiled
# into the library: a program, or a user's spec that embeds one, needs
# nothing else. The archive is made anew from the current list of specs.
build/libpolldrop.a: $(RT_OBJ) $(EP_OBJ) $(NAMES:%=build/obj/gen/%.o) build/list/specs
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $(filter %.o,$^)

# --- the harness library, plain and sanitized (the tests link the archive) ---

$(HARNESS:%=build/obj/%.o): build/obj/%.o: runtime/%.c runtime/harness.h runtime/harness_hooks.h $(RT_HDR) | deps
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(CFLAGS) -Iruntime $(shell pkg-config --cflags check) -c $< -o $@

$(HARNESS:%=build/asan/%.o): build/asan/%.o: runtime/%.c runtime/harness.h runtime/harness_hooks.h $(RT_HDR) | deps
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(SANFLAGS) -Iruntime $(shell pkg-config --cflags check) -c $< -o $@

build/libpolldrop_harness.a: $(HARNESS:%=build/obj/%.o)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

build/asan/libpolldrop_harness.a: $(HARNESS:%=build/asan/%.o)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# --- two builds of generated code: plain and sanitized ---

build/obj/gen/%.o: build/gen/%.c build/gen/.stamp $(RT_HDR) $(wildcard specs/*.h)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(CFLAGS) $(INC) -c $< -o $@

build/obj/gen-test/%.o: build/gen-test/%.c build/gen-test/.stamp build/gen/.stamp $(RT_HDR) $(TEST_HDR)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(TESTFLAGS) $(INC) -Ibuild/gen-test -Itests $(shell pkg-config --cflags check) -c $< -o $@

build/obj/gen-ex/%.o: build/gen-ex/%.c build/gen-ex/.stamp build/gen/.stamp $(RT_HDR)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(CFLAGS) $(INC) -Ibuild/gen-ex -c $< -o $@

$(RT_OBJ_ASAN): build/asan/%.o: runtime/%.c $(RT_HDR) $(RT_INT) | deps
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(SANFLAGS) -Iruntime -c $< -o $@

build/asan/gen/%.o: build/gen/%.c build/gen/.stamp $(RT_HDR) $(wildcard specs/*.h)
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(SANTESTFLAGS) $(INC) -c $< -o $@

build/asan/gen-test/%.o: build/gen-test/%.c build/gen-test/.stamp build/gen/.stamp $(RT_HDR) $(TEST_HDR)
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(SANTESTFLAGS) $(INC) -Ibuild/gen-test -Itests $(shell pkg-config --cflags check) -c $< -o $@

# --- tests ---

TEST_OBJ      := $(TEST_SRC:tests/%.c=build/obj/tests/%.o) $(RT_OBJ) $(EP_OBJ) \
                 $(NAMES:%=build/obj/gen/%.o) $(TEST_NAMES:%=build/obj/gen-test/%.o) \
                 $(HTTPD_OBJ) $(ECHO_OBJ) $(SMALL_OBJ)
TEST_OBJ_ASAN := $(TEST_SRC:tests/%.c=build/asan/tests/%.o) $(RT_OBJ_ASAN) $(EP_OBJ_ASAN) \
                 $(NAMES:%=build/asan/gen/%.o) $(TEST_NAMES:%=build/asan/gen-test/%.o) \
                 $(HTTPD_OBJ_ASAN) $(ECHO_OBJ_ASAN) $(SMALL_OBJ_ASAN)

build/obj/tests/%.o: tests/%.c $(TEST_HDR) $(EX_HDR) $(RT_HDR) $(EP_HDR) runtime/harness.h runtime/harness_hooks.h build/gen/.stamp build/gen-test/.stamp \
                     build/gen-httpd/.stamp build/gen-echo/.stamp $(SMALL_STAMPS)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(TESTFLAGS) $(INC) -D_GNU_SOURCE -Ibuild/gen-test -Itests $(HTTPD_INC) $(ECHO_INC) $(SMALL_INC) $(shell pkg-config --cflags check) -c $< -o $@

build/asan/tests/%.o: tests/%.c $(TEST_HDR) $(EX_HDR) $(RT_HDR) $(EP_HDR) runtime/harness.h runtime/harness_hooks.h build/gen/.stamp build/gen-test/.stamp \
                      build/gen-httpd/.stamp build/gen-echo/.stamp $(SMALL_STAMPS)
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(SANTESTFLAGS) $(INC) -D_GNU_SOURCE -Ibuild/gen-test -Itests $(HTTPD_INC) $(ECHO_INC) $(SMALL_INC) $(shell pkg-config --cflags check) -c $< -o $@

build/check_polldrop: $(TEST_OBJ) build/libpolldrop_harness.a
	$(call say,LD,$@)
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(URING) $(CHECK) $(HTTP_PARSER)

build/check_polldrop_asan: $(TEST_OBJ_ASAN) build/asan/libpolldrop_harness.a
	$(call say,LD,$@)
	$(Q)$(CC) $(SANFLAGS) $^ -o $@ $(URING) $(CHECK) $(HTTP_PARSER)

# make test: every test, side by side (tests/run_tests.py): the Python
# tests, and each suite of both Check runners, the sanitized one on io_uring
# and on epoll, the plain one on the simulator (test-c-sim), and the
# cancel-point cases explored under the simulator (2 seeds plain, 1
# sanitized); test-py, test-c, test-c-epoll and test-c-sim run a part.
# build/uv_dcopy too where libuv is installed: tests/test_dcopy.py holds it to
# dcopy's contract.
HAVE_UV  := $(shell pkg-config --exists libuv 2>/dev/null && echo 1)
TEST_BIN := build/libpolldrop.a build/echo_server build/echo_client build/check_polldrop \
            build/seccomp_run build/httpd $(SMALL:%=build/%) $(if $(HAVE_UV),build/uv_dcopy)

test: $(TEST_BIN) build/check_polldrop_asan | deps
	$(call say,TEST,python; build/check_polldrop; build/check_polldrop_asan on io_uring and on epoll; build/check_polldrop on sim; cancel points explored under sim)
	$(Q)$(PYTHON) tests/run_tests.py $(if $(V),-v,)

# seccomp_run runs a command where io_uring is switched off by a seccomp
# filter, as a container's profile does: tests/test_no_uring.py and
# tests/test_seccomp.py run the Check runner, echo_server and httpd under it
# (they must fall back to epoll, and say so).
build/seccomp_run: tests/tools/seccomp_run.c | deps
	$(call say,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(CFLAGS) $< -o $@ $(SECCOMP)

test-py: $(TEST_BIN) | deps
	$(call say,TEST,python: generator and example programs)
	$(Q)$(PYTHON) tests/run_tests.py --py $(if $(V),-v,)

# More of the spec fuzzer than make test's slice (tests/test_fuzz.py):
# make fuzz N=5000 SEED=7.
fuzz: | deps
	$(call say,FUZZ,$(or $(N),1000) mutated specs; seed $(or $(SEED),1))
	$(Q)$(PYTHON) tests/fuzz_specs.py -n $(or $(N),1000) --seed $(or $(SEED),1) $(if $(V),-v,)

test-c: build/check_polldrop build/check_polldrop_asan | deps
	$(call say,TEST,build/check_polldrop; build/check_polldrop_asan on io_uring and on epoll)
	$(Q)$(PYTHON) tests/run_tests.py --c $(if $(V),-v,)

# The Check suite again on the epoll engine (PD_ENGINE=epoll: every runtime
# the suites make is an epoll one), sanitized and checked.
test-c-epoll: build/check_polldrop_asan
	$(call say,TEST,build/check_polldrop_asan on the epoll engine)
	$(Q)PD_ENGINE=epoll ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./build/check_polldrop_asan

# The Check suite on the simulator engine (PD_ENGINE=sim: every runtime the
# suites make is a simulated one), without faults, as the tests assert
# outcomes; the tests that need a real kernel on the real clock say so and
# skip (docs/design.md, "The simulator").
test-c-sim: build/check_polldrop
	$(call say,TEST,build/check_polldrop on the simulator)
	$(Q)PD_ENGINE=sim PD_SIM_FAULTS=0 ./build/check_polldrop

# The cancel-point cases (the tcases tagged "harness") explored under the
# simulator engine for SEEDS seeds each, by the plain runner and then by the
# sanitized one (make test explores 2 and 1): make explore SEEDS=500. A
# failure names its seed and a replay command.
explore: build/check_polldrop build/check_polldrop_asan
	$(call say,EXPLORE,the cancel-point cases under the simulator: $(or $(SEEDS),100) seeds)
	$(Q)PD_HARNESS_SEEDS=$(or $(SEEDS),100) CK_INCLUDE_TAGS=harness \
	    CK_TIMEOUT_MULTIPLIER=$(or $(SEEDS),100) ./build/check_polldrop
	$(call say,EXPLORE,the same under ASan+UBSan: $(or $(SEEDS),100) seeds)
	$(Q)PD_HARNESS_SEEDS=$(or $(SEEDS),100) CK_INCLUDE_TAGS=harness \
	    CK_TIMEOUT_MULTIPLIER=$(or $(SEEDS),100) \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./build/check_polldrop_asan

# nouserintercepts: memcheck must not replace the harness's counting malloc
# (it still replaces the glibc allocator the harness forwards to).
# Mutation testing (not part of test): every named mutant in
# tests/mutants/mutate.py must make a test of make test's builds fail
# (build/mutate/tree, suites side by side). MUTANTS="a b" picks some.
mutate: | deps
	$(Q)$(PYTHON) tests/mutants/mutate.py $(MUTANTS)

# The randomised multishot tests at full length, plain and sanitized:
# 10,000 rounds each (make test runs 1,000 of the accept rounds, 200 of
# the recv rounds).
soak: build/check_polldrop build/check_polldrop_asan
	$(call say,SOAK,multishot: 10000 rounds)
	$(Q)PD_SOAK_ROUNDS=10000 CK_TIMEOUT_MULTIPLIER=20 CK_RUN_SUITE=multishot \
	    ./build/check_polldrop
	$(Q)PD_SOAK_ROUNDS=10000 CK_TIMEOUT_MULTIPLIER=20 CK_RUN_SUITE=multishot \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ./build/check_polldrop_asan

valgrind: build/check_polldrop
	$(call say,VALGRIND,build/check_polldrop)
	$(Q)CK_FORK=no valgrind -q --soname-synonyms=somalloc=nouserintercepts \
	    --error-exitcode=1 --leak-check=full \
	    --errors-for-leak-kinds=definite ./build/check_polldrop

# --- the demo and examples ---

build/demo: examples/demo.c build/libpolldrop.a $(EX_NAMES:%=build/obj/gen-ex/%.o)
	$(call say,LD,$@)
	$(Q)$(CC) $(WARN) $(CFLAGS) $(INC) -Ibuild/gen-ex examples/demo.c \
	    $(EX_NAMES:%=build/obj/gen-ex/%.o) build/libpolldrop.a -o $@ $(URING)

# --- the echo server and client ---

build/gen-echo/.stamp: $(ECHO_SPECS) examples/echo/echo_link.h $(SPECS) build/list/echo build/list/specs \
                       $(GEN_DEPS) | deps
	$(call say,GEN,examples/echo/)
	$(Q)rm -rf build/gen-echo
	$(Q)$(PYTHON) -m gen -o build/gen-echo -I specs $(ECHO_SPECS)
	$(Q)touch $@

build/obj/gen-echo/%.o: build/gen-echo/%.c build/gen-echo/.stamp examples/echo/echo_link.h $(RT_HDR)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(CFLAGS) $(INC) $(ECHO_INC) -c $< -o $@

build/asan/gen-echo/%.o: build/gen-echo/%.c build/gen-echo/.stamp examples/echo/echo_link.h $(RT_HDR)
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(SANTESTFLAGS) $(INC) $(ECHO_INC) -c $< -o $@

build/echo_server build/echo_client: build/%: examples/echo/%.c examples/args.h $(ECHO_OBJ) \
                                     build/libpolldrop.a
	$(call say,LD,$@)
	$(Q)$(CC) $(WARN) $(CFLAGS) $(INC) $(ECHO_INC) $< $(ECHO_OBJ) build/libpolldrop.a -o $@ $(URING)

# --- the small examples: dcopy, lines ---

define small_example
build/list/$(1): LIST := $(call small_names,$(1))
build/gen-$(1)/.stamp: $(wildcard examples/$(1)/*.yaml) $(SPECS) build/list/$(1) build/list/specs \
                       $(GEN_DEPS) | deps
	$$(call say,GEN,examples/$(1)/)
	$(Q)rm -rf build/gen-$(1)
	$(Q)$$(PYTHON) -m gen -o build/gen-$(1) -I specs $(wildcard examples/$(1)/*.yaml)
	$(Q)touch $$@
$(patsubst %,build/gen-$(1)/%.c,$(call small_names,$(1))): build/gen-$(1)/.stamp
build/obj/gen-$(1)/%.o: build/gen-$(1)/%.c build/gen-$(1)/.stamp build/gen/.stamp $(RT_HDR)
	$$(call say,CC,$$<)
	$(Q)mkdir -p $$(@D)
	$(Q)$$(CC) $(WARN) $$(CFLAGS) $(INC) -Ibuild/gen-$(1) -c $$< -o $$@
build/asan/gen-$(1)/%.o: build/gen-$(1)/%.c build/gen-$(1)/.stamp build/gen/.stamp $(RT_HDR)
	$$(call say,CC-SAN,$$<)
	$(Q)mkdir -p $$(@D)
	$(Q)$$(CC) $(WARN) $(SANTESTFLAGS) $(INC) -Ibuild/gen-$(1) -c $$< -o $$@
build/$(1): examples/$(1)/$(1).c examples/args.h $(patsubst %,build/obj/gen-$(1)/%.o,$(call small_names,$(1))) \
            build/libpolldrop.a
	$$(call say,LD,$$@)
	$(Q)$$(CC) $(WARN) $$(CFLAGS) $(INC) -Ibuild/gen-$(1) $$< \
	    $(patsubst %,build/obj/gen-$(1)/%.o,$(call small_names,$(1))) build/libpolldrop.a -o $$@ $$(URING)
endef
$(foreach e,$(SMALL),$(eval $(call small_example,$(e))))

# --- httpd ---

build/gen-httpd/.stamp: $(HTTPD_SPECS) $(SPECS) build/list/httpd build/list/specs $(GEN_DEPS) | deps
	$(call say,GEN,examples/httpd/)
	$(Q)rm -rf build/gen-httpd
	$(Q)$(PYTHON) -m gen -o build/gen-httpd -I specs $(HTTPD_SPECS)
	$(Q)touch $@

build/obj/httpd/%.o: examples/httpd/%.c $(wildcard examples/httpd/*.h) $(RT_HDR) \
                     build/gen-httpd/.stamp
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(CFLAGS) $(INC) $(HTTPD_INC) -c $< -o $@

build/asan/httpd/%.o: examples/httpd/%.c $(wildcard examples/httpd/*.h) $(RT_HDR) \
                      build/gen-httpd/.stamp
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(SANTESTFLAGS) $(INC) $(HTTPD_INC) -c $< -o $@

build/obj/gen-httpd/%.o: build/gen-httpd/%.c build/gen-httpd/.stamp examples/httpd/http.h $(RT_HDR)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(CFLAGS) $(INC) $(HTTPD_INC) -c $< -o $@

build/asan/gen-httpd/%.o: build/gen-httpd/%.c build/gen-httpd/.stamp examples/httpd/http.h $(RT_HDR)
	$(call say,CC-SAN,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(SANTESTFLAGS) $(INC) $(HTTPD_INC) -c $< -o $@

build/httpd: examples/httpd/httpd.c examples/args.h $(HTTPD_OBJ) build/libpolldrop.a
	$(call say,LD,$@)
	$(Q)$(CC) $(WARN) $(CFLAGS) $(INC) $(HTTPD_INC) $< $(HTTPD_OBJ) build/libpolldrop.a \
	    -o $@ $(URING) $(HTTP_PARSER) -lpthread

# --- benchmarks ---

build/raw_echo: bench/raw_echo.c | deps-bench
	$(call say,LD,$@)
	$(Q)$(CC) $(WARN) -O2 $< -o $@ $(URING)

build/raw_echo_ms: bench/raw_echo_ms.c | deps-bench
	$(call say,LD,$@)
	$(Q)$(CC) $(WARN) -O2 $< -o $@ $(URING)

# The raw liburing floor of httpd's small-file rows (bench/httpd_bench.sh).
build/raw_http: bench/raw_http.c | deps-bench
	$(call say,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) -O2 $< -o $@ $(URING) -lpthread

build/uv_echo: bench/uv_echo.c | deps-bench
	$(call say,LD,$@)
	$(Q)$(CC) $(WARN) -O2 $< -o $@ $(UV)

# The directory copy in libuv, the length comparison for examples/dcopy.
build/uv_dcopy: bench/uv_dcopy.c | $(if $(HAVE_UV),,deps-bench)
	$(call say,LD,$@)
	$(Q)$(CC) $(WARN) -O2 $< -o $@ $(UV)

# The test specs the benchmark links, compiled as the library is.
BENCH_OBJ := build/obj/gen-echo/echo_client.o build/obj/bench/nops.o \
             build/obj/bench/pipe_read.o build/obj/bench/hop.o

build/obj/bench/%.o: build/gen-test/%.c build/gen-test/.stamp build/gen/.stamp $(RT_HDR) $(TEST_HDR)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(CFLAGS) $(INC) -Ibuild/gen-test -Itests -c $< -o $@

build/bench: bench/bench.c bench/threads.c bench/threads.h build/libpolldrop.a $(BENCH_OBJ) | deps-bench
	$(call say,LD,$@)
	$(Q)$(CC) $(WARN) $(CFLAGS) $(INC) $(ECHO_INC) -Ibuild/gen-test -Ibench -Itests $< bench/threads.c \
	    $(BENCH_OBJ) build/libpolldrop.a -o $@ $(URING)

build/idle_conns: bench/idle_conns.c | deps-bench
	$(call say,LD,$@)
	$(Q)$(CC) $(WARN) -O2 $< -o $@

# Every benchmark, then the chart of their ratios: build/bench-httpd.tsv,
# build/bench.tsv, build/bench.svg. The load averages at the start and at
# the end (build/bench-load.txt) go in the chart's title.
bench: build/bench build/echo_server build/raw_echo build/raw_echo_ms build/raw_http build/uv_echo \
       build/httpd build/idle_conns | deps-bench
	$(Q)cut -d' ' -f1-3 /proc/loadavg >build/bench-load.txt
	$(call say,BENCH,httpd against h2o and nginx)
	$(Q)sh bench/httpd_bench.sh
	$(Q)./build/bench
	$(Q)cut -d' ' -f1-3 /proc/loadavg >>build/bench-load.txt
	$(call say,CHART,build/bench.svg)
	$(Q)sh bench/chart.sh

# httpd against h2o and nginx (and the small-file rows against the raw
# liburing floor, build/raw_http) under wrk, one and two threads:
# build/bench-httpd.tsv (about 6 minutes).
bench-httpd: build/httpd build/idle_conns build/raw_http | deps-bench
	$(call say,BENCH,httpd against h2o and nginx)
	$(Q)sh bench/httpd_bench.sh

# The chart of the last run's TSVs again: build/bench.svg.
bench-chart: | deps-bench
	$(Q)sh bench/chart.sh

demo: build/demo
	$(Q)./build/demo

# Every spec's state machine as SVG, through `python3 -m gen --dot` and
# Graphviz: build/diagrams/{specs,tests,examples,echo,outside}/NAME.svg.
# docs/echo_conn.svg is build/diagrams/echo/echo_conn.svg, committed.
OUT_SPECS := $(wildcard examples/outside/specs/*.yaml)

diagrams: build/diagrams/.stamp

build/diagrams/.stamp: $(SPECS) $(TEST_SPECS) $(EX_SPECS) $(ECHO_SPECS) $(OUT_SPECS) $(GEN_DEPS) \
                       $(foreach e,$(SMALL),$(wildcard examples/$(e)/*.yaml)) \
                       | deps deps-diagrams
	$(call say,DOT,build/diagrams/)
	$(Q)rm -rf build/diagrams
	$(Q)$(PYTHON) -m gen --dot -o build/diagrams/specs $(SPECS)
	$(Q)$(PYTHON) -m gen --dot -o build/diagrams/tests -I specs $(TEST_SPECS)
	$(Q)$(PYTHON) -m gen --dot -o build/diagrams/examples -I specs $(EX_SPECS)
	$(Q)$(PYTHON) -m gen --dot -o build/diagrams/echo -I specs $(ECHO_SPECS)
	$(Q)$(PYTHON) -m gen --dot -o build/diagrams/outside -I specs $(OUT_SPECS)
	$(Q)$(foreach e,$(SMALL),$(PYTHON) -m gen --dot -o build/diagrams/$(e) -I specs examples/$(e)/*.yaml &&) true
	$(Q)for f in build/diagrams/*/*.dot; do dot -Tsvg "$$f" -o "$${f%.dot}.svg" || exit 1; done
	$(Q)touch $@

# The spec language as a JSON Schema, from the generator's tables; a test
# fails while the committed file is stale.
schema: | deps
	$(call say,GEN,docs/polldrop-spec.schema.json)
	$(Q)$(PYTHON) scripts/spec_schema.py docs/polldrop-spec.schema.json

# The op table of docs/spec-language.md, from the generator's (gen/ops.py);
# a test fails while the committed table is stale.
ops-doc: | deps
	$(call say,GEN,docs/spec-language.md: the op table)
	$(Q)$(PYTHON) scripts/ops_doc.py docs/spec-language.md

# --- installation: `make install PREFIX=... DESTDIR=...`, `make uninstall` ---

PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
DATADIR      ?= $(PREFIX)/share
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# The version lives in one place, the generator's package.
VERSION      := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' gen/__init__.py)
# Every installed path, recorded by install and read back by uninstall.
MANIFEST      = $(DATADIR)/polldrop/install-manifest
INSTALL_DIRS  = $(PREFIX) $(BINDIR) $(LIBDIR) $(INCLUDEDIR) $(DATADIR) $(PKGCONFIGDIR)
INSTALL_SH    = DESTDIR='$(DESTDIR)' sh scripts/install.sh
# The .pc files are relocatable: their prefix is the way up from their own
# directory (${pcfiledir}/../.. by default), and each directory under PREFIX
# is written from ${prefix}; one outside PREFIX stays absolute, and so does
# the prefix of a PKGCONFIGDIR outside PREFIX.
under_prefix  = $(filter $(PREFIX)/%,$(1))
pc_dir        = $(if $(call under_prefix,$(1)),$${prefix}/$(patsubst $(PREFIX)/%,%,$(1)),$(1))
PC_PREFIX     = $(if $(call under_prefix,$(PKGCONFIGDIR)),$${pcfiledir}/$(shell realpath -m -s \
                    --relative-to='$(PKGCONFIGDIR)' '$(PREFIX)'),$(PREFIX))
SUBST         = sed -e 's|@PREFIX@|$(PC_PREFIX)|g' -e 's|@BINDIR@|$(call pc_dir,$(BINDIR))|g' \
                    -e 's|@LIBDIR@|$(call pc_dir,$(LIBDIR))|g' \
                    -e 's|@INCLUDEDIR@|$(call pc_dir,$(INCLUDEDIR))|g' \
                    -e 's|@DATADIR@|$(call pc_dir,$(DATADIR))|g' -e 's|@VERSION@|$(VERSION)|g'

install: build/libpolldrop.a build/libpolldrop_harness.a build/gen/.stamp build/httpd
	$(if $(filter-out /%,$(INSTALL_DIRS)),$(error make install: PREFIX and the *DIR \
	    variables must be absolute paths without spaces (PREFIX=$(PREFIX)); \
	    for example PREFIX=$(CURDIR)/build/inst))
	$(call say,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)rm -rf build/install && mkdir -p build/install
	$(Q)$(SUBST) polldrop.pc.in >build/install/polldrop.pc
	$(Q)$(SUBST) polldrop-harness.pc.in >build/install/polldrop-harness.pc
	$(Q)sed -e "s|@SHARE_REL@|$$(realpath -m --relative-to='$(BINDIR)' '$(DATADIR)/polldrop')|g" \
	    -e "s|@INCLUDE_REL@|$$(realpath -m --relative-to='$(BINDIR)' '$(INCLUDEDIR)/polldrop')|g" \
	    scripts/polldrop-gen.in >build/install/polldrop-gen
	$(Q)cp build/httpd build/install/polldrop-httpd
	$(Q)$(INSTALL_SH) install '$(MANIFEST)' \
	    --to '$(BINDIR)' 755 build/install/polldrop-gen build/install/polldrop-httpd \
	    --to '$(LIBDIR)' 644 build/libpolldrop.a build/libpolldrop_harness.a \
	    --to '$(INCLUDEDIR)/polldrop' 644 $(RT_HDR) runtime/harness.h runtime/harness_hooks.h $(NAMES:%=build/gen/%.h) \
	    --to '$(PKGCONFIGDIR)' 644 build/install/polldrop.pc build/install/polldrop-harness.pc \
	    --to '$(DATADIR)/polldrop' 644 polldrop.mk docs/polldrop-spec.schema.json \
	    --to '$(DATADIR)/polldrop/gen' 644 $(wildcard gen/*.py) \
	    --to '$(DATADIR)/polldrop/templates' 644 $(wildcard templates/*.j2) \
	    --to '$(DATADIR)/polldrop/specs' 644 $(SPECS)

uninstall:
	$(call say,RM,$(DESTDIR)$(PREFIX): what make install recorded)
	$(Q)$(INSTALL_SH) uninstall '$(MANIFEST)'

clean:
	$(call say,RM,build)
	$(Q)rm -rf build
