#!/bin/sh
# Checks for what polldrop builds with and installs the missing Debian
# packages (as root, or through sudo), or prints the exact command to run.
# Usage: scripts/deps.sh [bench|diagrams]   ("bench" also wants libuv for
# the baselines, h2o, nginx and wrk for httpd's, gnuplot for the chart;
# "diagrams" Graphviz's dot)
set -u
python=${PYTHON:-python3}
need=""

command -v pkg-config >/dev/null 2>&1 || need="$need pkg-config"
if command -v pkg-config >/dev/null 2>&1; then
    pkg-config --exists liburing || need="$need liburing-dev"
    pkg-config --exists check || need="$need check"
    # The tests' seccomp_run (io_uring switched off, as in a container).
    pkg-config --exists libseccomp || need="$need libseccomp-dev"
    if [ "${1:-}" = bench ]; then
        pkg-config --exists libuv || need="$need libuv1-dev"
    fi
else
    need="$need liburing-dev check libseccomp-dev"
    [ "${1:-}" = bench ] && need="$need libuv1-dev"
fi
# The generator (and the schema test) run on Debian's python3 when the one
# on PATH lacks the modules.
# The modules are found, not imported: this runs on every make.
has_mods='import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("yaml", "jinja2", "jsonschema")))'
if ! "$python" -c "$has_mods" >/dev/null 2>&1 &&
   ! /usr/bin/python3 -c "$has_mods" >/dev/null 2>&1; then
    /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || need="$need python3-yaml"
    /usr/bin/python3 -c 'import jinja2' >/dev/null 2>&1 || need="$need python3-jinja2"
    /usr/bin/python3 -c 'import jsonschema' >/dev/null 2>&1 || need="$need python3-jsonschema"
fi
# httpd (built by make and make test) parses HTTP with Debian's http-parser,
# which ships no pkg-config file: look for its header.
[ -f /usr/include/http_parser.h ] || need="$need libhttp-parser-dev"
# tests/test_seccomp.py loads Podman's default seccomp profile (from
# containers-common) with libseccomp's Python module, for Debian's python3.
[ -f /usr/share/containers/seccomp.json ] || need="$need golang-github-containers-common"
/usr/bin/python3 -c 'import seccomp' >/dev/null 2>&1 || need="$need python3-seccomp"
if [ "${1:-}" = bench ]; then
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx-light"
    command -v wrk >/dev/null 2>&1 || need="$need wrk"
    command -v h2o >/dev/null 2>&1 || need="$need h2o"
    command -v gnuplot >/dev/null 2>&1 || need="$need gnuplot-nox"
fi
if [ "${1:-}" = diagrams ]; then
    command -v dot >/dev/null 2>&1 || need="$need graphviz"
fi
command -v cc >/dev/null 2>&1 || need="$need gcc"
command -v make >/dev/null 2>&1 || need="$need make"

[ -z "$need" ] && exit 0

cmd="apt-get install -y$need"
echo "polldrop: missing:$need" >&2
if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo"
else
    echo "polldrop: run as root: apt-get update && $cmd" >&2
    exit 1
fi
echo "polldrop: installing:$need" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq $need >/dev/null || {
    echo "polldrop: install failed; run: apt-get update && $cmd" >&2
    exit 1
}
