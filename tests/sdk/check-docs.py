#!/usr/bin/env python3
"""Every code example in the SDK docs is compiled or run.

    tests/sdk/check-docs.py [--run] [--workdir DIR] DOC.md ...

Each fenced code block must be announced by an HTML comment on the line
before it, saying how it is checked:

  <!-- check: excerpt PATH -->  the block is, line for line, part of PATH
                                 (a file of this tree): the doc shows real code
  <!-- check: compile -->       a C translation unit: compiled (-c, -Werror)
                                 with `pkg-config --cflags smolvm-plugin`
  <!-- check: file NAME -->     saved as NAME in the work directory, for the
                                 `run` blocks after it (a C file is also
                                 compiled, as with `compile`)
  <!-- check: run -->           shell commands, run with bash -e in the work
                                 directory (only with --run); when the next
                                 block is ```text, each of its lines other
                                 than "..." must be a line of their output
  <!-- check: make-n -->        `make ...` lines, run as `make -n` in the
                                 source tree: the targets and variables exist

```text blocks (sample output) need no comment; any other block without one
is an error. The environment decides which SDK is used: PKG_CONFIG_PATH (and
PKG_CONFIG_SYSROOT_DIR) for pkg-config, PATH for smolvm. Run by
tests/integration/sdk.test.sh against a staged `make install`.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXEMPT = {"text", "console", "output"}
CC = os.environ.get("CC", "cc")


class Block:
    def __init__(self, doc, line, lang, body, check):
        self.doc, self.line, self.lang, self.body, self.check = doc, line, lang, body, check
        self.expect = None  # the ```text block right after a run block

    def where(self):
        return "%s:%d" % (os.path.relpath(self.doc, ROOT), self.line)


def parse(doc):
    blocks, pending = [], None
    lines = open(doc, encoding="utf-8").read().split("\n")
    i = 0
    last_nonblank = None
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            c = re.match(r"^<!--\s*check:\s*(.*?)\s*-->\s*$", lines[i])
            if lines[i].strip():
                last_nonblank = ("check", c.group(1)) if c else ("text", None)
            i += 1
            continue
        start = i + 1
        j = start
        while j < len(lines) and not re.match(r"^```\s*$", lines[j]):
            j += 1
        if j == len(lines):
            raise SystemExit("%s:%d: unterminated code block" % (doc, start))
        check = last_nonblank[1] if last_nonblank and last_nonblank[0] == "check" else None
        blocks.append(Block(doc, start, m.group(1), "\n".join(lines[start:j]), check))
        last_nonblank = ("block", None)
        i = j + 1
    # A run block's expected output: the ```text block that follows it
    # with nothing but blank lines or a sentence in between.
    for a, b in zip(blocks, blocks[1:]):
        if a.check == "run" and b.lang == "text" and b.check is None:
            a.expect = b
    return blocks


def sh(cmd, cwd, timeout=60):
    p = subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       text=True, errors="replace")
    return p.returncode, p.stdout


def pkg_cflags():
    rc, out = sh(["pkg-config", "--cflags", "smolvm-plugin"], ROOT)
    if rc:
        raise SystemExit("pkg-config --cflags smolvm-plugin failed: " + out)
    return shlex.split(out)


def compile_c(path, work):
    cmd = [CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-fPIC", "-c"] + pkg_cflags() + \
          [path, "-o", os.path.join(work, os.path.basename(path) + ".o")]
    rc, out = sh(cmd, work)
    return None if rc == 0 else "compile failed:\n" + out


def check_excerpt(b, arg):
    path = os.path.join(ROOT, arg)
    if not os.path.isfile(path):
        return "excerpt of %s: no such file" % arg
    text = [l.rstrip() for l in open(path, encoding="utf-8").read().split("\n")]
    want = [l.rstrip() for l in b.body.split("\n")]
    n = len(want)
    if not any(text[k:k + n] == want for k in range(len(text) - n + 1)):
        return "not (or no longer) an excerpt of %s: update the doc from the file" % arg
    return None


def check_make_n(b):
    for line in b.body.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        if words[0] != "make":
            return "make-n block: not a make command: %s" % line
        rc, out = sh(["make", "-n", "-C", ROOT] + words[1:], ROOT, timeout=120)
        if rc:
            return "`%s` fails as make -n:\n%s" % (line, out[-2000:])
    return None


def check_run(b, work):
    rc, out = sh(["timeout", "-k", "5", "300", "bash", "-e", "-o", "pipefail", "-c", b.body],
                 work, timeout=320)
    if rc:
        return "exit %d:\n%s" % (rc, out[-3000:])
    if b.expect:
        got = {l.rstrip("\r ") for l in out.split("\n")}
        for l in b.expect.body.split("\n"):
            if l.strip() and l.strip() != "..." and l.rstrip() not in got:
                return "the output has no line %r (%s shows it):\n%s" % (
                    l, b.expect.where(), out[-3000:])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="store_true", help="also run the `run` blocks (boots VMs)")
    ap.add_argument("--workdir")
    ap.add_argument("docs", nargs="+")
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="smolvm-docs.")
    os.makedirs(work, exist_ok=True)
    errors, counts = 0, {}
    for doc in a.docs:
        for b in parse(doc):
            if b.check is None:
                if b.lang in EXEMPT:
                    continue
                why = "```%s block without a <!-- check: ... --> comment" % b.lang
            else:
                mode, _, arg = b.check.partition(" ")
                arg = arg.strip()
                why = None
                if mode == "excerpt":
                    why = check_excerpt(b, arg)
                elif mode == "compile":
                    path = os.path.join(work, "snippet-%d.c" % b.line)
                    open(path, "w").write(b.body + "\n")
                    why = compile_c(path, work)
                elif mode == "file":
                    path = os.path.join(work, arg)
                    open(path, "w").write(b.body + "\n")
                    if arg.endswith(".c"):
                        why = compile_c(path, work)
                elif mode == "make-n":
                    why = check_make_n(b)
                elif mode == "run":
                    if not a.run:
                        continue
                    why = check_run(b, work)
                else:
                    why = "unknown check mode %r" % mode
                if not why:
                    counts[mode] = counts.get(mode, 0) + 1
            if why:
                errors += 1
                print("%s: %s" % (b.where(), why))
    summary = ", ".join("%d %s" % (n, m) for m, n in sorted(counts.items()))
    if errors:
        print("check-docs: %d block(s) failed (%s passed)" % (errors, summary or "none"))
        return 1
    print("check-docs: %s" % summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
