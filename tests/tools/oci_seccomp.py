#!/usr/bin/python3
"""oci_seccomp.py PROFILE.json COMMAND [ARG...]: runs COMMAND under a
container runtime's seccomp profile, as the runtime would load it.

PROFILE is an OCI seccomp profile in the JSON of Docker, Podman and
containers-common (/usr/share/containers/seccomp.json is Podman's default,
from Debian's golang-github-containers-common). Its rules are loaded with
libseccomp (Debian's python3-seccomp, for /usr/bin/python3) for a process
with the capabilities a default Podman container has, on this machine's
architecture: a rule applies when its `includes` (arches, caps) all hold
and none of its `excludes` does. Then COMMAND is executed under the filter.
Exit status 2 when the profile cannot be loaded, 127 when COMMAND cannot
be run.
"""
import errno
import json
import os
import platform
import sys

# A default Podman (containers.conf) container's capabilities.
CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
        "CAP_SYS_CHROOT"}
# The profile's names for this machine's architecture.
ARCHES = {"x86_64": {"amd64"}, "aarch64": {"arm64"}}.get(platform.machine(), set())


def fail(msg):
    print(f"oci_seccomp: {msg}", file=sys.stderr)
    sys.exit(2)


def applies(rule):
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("arches") and not ARCHES & set(inc["arches"]):
        return False
    if inc.get("caps") and not set(inc["caps"]) <= CAPS:
        return False
    if exc.get("arches") and ARCHES & set(exc["arches"]):
        return False
    if exc.get("caps") and CAPS & set(exc["caps"]):
        return False
    if inc.get("minKernel") or exc.get("minKernel"):
        return False  # not in the profiles this is used with
    return True


def action(seccomp, name, ret, default_ret):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(ret if ret is not None else default_ret)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return seccomp.KILL
    if name == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    if name == "SCMP_ACT_LOG":
        return seccomp.LOG
    fail(f"action {name} is not supported")


def load(seccomp, profile):
    ops = {"SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_NE": seccomp.NE, "SCMP_CMP_LT": seccomp.LT,
           "SCMP_CMP_LE": seccomp.LE, "SCMP_CMP_GT": seccomp.GT, "SCMP_CMP_GE": seccomp.GE,
           "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ}
    default_ret = profile.get("defaultErrnoRet", errno.EPERM)
    f = seccomp.SyscallFilter(action(seccomp, profile["defaultAction"], None, default_ret))
    for rule in profile.get("syscalls", []):
        if not applies(rule):
            continue
        act = action(seccomp, rule["action"], rule.get("errnoRet"), default_ret)
        args = []
        for a in rule.get("args") or []:
            if a["op"] == "SCMP_CMP_MASKED_EQ":
                args.append(seccomp.Arg(a["index"], ops[a["op"]], a["value"], a["valueTwo"]))
            else:
                args.append(seccomp.Arg(a["index"], ops[a["op"]], a["value"]))
        for name in rule["names"]:
            try:
                f.add_rule(act, name, *args)
            except (RuntimeError, ValueError, OSError):
                pass  # a call this architecture or libseccomp does not know
    return f


def main(argv):
    if len(argv) < 3:
        print("usage: oci_seccomp.py PROFILE.json COMMAND [ARG...]", file=sys.stderr)
        return 2
    try:
        import seccomp
    except ImportError:
        fail("the seccomp module is missing (Debian's python3-seccomp, for /usr/bin/python3)")
    try:
        with open(argv[1], encoding="utf-8") as fp:
            profile = json.load(fp)
    except (OSError, ValueError) as e:
        fail(f"{argv[1]}: {e}")
    f = load(seccomp, profile)
    try:
        f.load()
    except OSError as e:
        fail(f"cannot load the filter: {e}")
    try:
        os.execvp(argv[2], argv[2:])
    except OSError as e:
        print(f"oci_seccomp: {argv[2]}: {e.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
