#!/usr/bin/env python3
"""Drives the guest agent over its protocol (docs/agent-protocol.md).

    tests/integration/agentclient.py AGENT WORKDIR

Starts AGENT --listen-unix WORKDIR/agent.sock --dry-sync on this host (with
SIGINT ignored, as the guest's init would leave it) and checks it from the
host's side: HELLO, EXEC (output, exit codes, signals, stdin, environment,
session, signal dispositions), PUT/GET, errors, several connections at once,
malformed frames, SIGTERM. Prints one line per check; exits 1 on a failure.
Used by tests/integration/agent.test.sh; the Conn class is a small client
for poking at an agent by hand.
"""
import errno
import hashlib
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

HDR = struct.Struct("<IBBH")
MAX_PAYLOAD = 65536
(HELLO, SYNC, EXEC, STDIN, STDOUT, STDERR, SIGNAL, EXIT, PUT, GET, DATA, OK, ERROR,
 STARTED) = range(1, 15)
NAMES = {v: k for k, v in dict(HELLO=1, SYNC=2, EXEC=3, STDIN=4, STDOUT=5, STDERR=6,
                               SIGNAL=7, EXIT=8, PUT=9, GET=10, DATA=11, OK=12, ERROR=13,
                               STARTED=14).items()}


class Closed(Exception):
    pass


class Conn:
    def __init__(self, path, hello=True, timeout=30):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""
        if hello:
            self.hello()

    def close(self):
        self.s.close()

    def send(self, typ, payload=b""):
        self.s.sendall(HDR.pack(len(payload), typ, 0, 0) + payload)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise Closed("connection closed by the agent")
            self.buf += chunk

    def recv(self):
        self._need(HDR.size)
        length, typ, flags, reserved = HDR.unpack_from(self.buf)
        if flags or reserved or length > MAX_PAYLOAD or typ == 0:
            raise AssertionError("bad header from the agent: %r" % self.buf[:8])
        self._need(HDR.size + length)
        payload = self.buf[HDR.size:HDR.size + length]
        self.buf = self.buf[HDR.size + length:]
        return typ, payload

    def expect_eof(self):
        """The agent closes the connection (after what it still sends)."""
        try:
            while True:
                self.recv()
        except Closed:
            return True
        except (ConnectionResetError, socket.timeout):
            return False

    def hello(self, version=1):
        self.send(HELLO, struct.pack("<I", version) + b"agentclient\0")
        typ, p = self.recv()
        assert typ == HELLO, "HELLO answered with %s %r" % (NAMES.get(typ), p)
        ver, = struct.unpack_from("<I", p)
        name = p[4:].rstrip(b"\0").decode()
        return ver, name

    def expect_ok(self):
        typ, p = self.recv()
        if typ == ERROR:
            raise AgentError(p)
        assert typ == OK, "expected OK, got %s" % NAMES.get(typ)

    def exec_start(self, argv, env=(), cwd=""):
        strs = [cwd] + list(argv) + list(env)
        payload = struct.pack("<III", 0, len(argv), len(env)) + \
            b"".join(s.encode() + b"\0" for s in strs)
        self.send(EXEC, payload)
        typ, p = self.recv()
        if typ == ERROR:
            raise AgentError(p)
        assert typ == STARTED and len(p) == 4, "EXEC answered with %s" % NAMES.get(typ)
        return struct.unpack("<I", p)[0]

    def exec_wait(self):
        out, err, ended = [], [], set()
        while True:
            typ, p = self.recv()
            if typ in (STDOUT, STDERR):
                assert typ not in ended, "%s after its end" % NAMES[typ]
                if p:
                    (out if typ == STDOUT else err).append(p)
                else:
                    ended.add(typ)
            elif typ == EXIT:
                assert ended == {STDOUT, STDERR}, "EXIT before both streams ended"
                how, value = struct.unpack("<II", p)
                return b"".join(out), b"".join(err), ("signaled" if how else "exited", value)
            else:
                raise AssertionError("unexpected %s during EXEC" % NAMES.get(typ))

    def run(self, argv, stdin=b"", env=(), cwd=""):
        pid = self.exec_start(argv, env, cwd)
        for i in range(0, len(stdin), MAX_PAYLOAD):
            self.send(STDIN, stdin[i:i + MAX_PAYLOAD])
        self.send(STDIN)
        r = self.exec_wait()
        return r + (pid,)

    def put(self, path, data, mode=0o644):
        self.send(PUT, struct.pack("<I", mode) + path.encode() + b"\0")
        if mode & stat.S_IFDIR:
            return self.expect_ok()
        for i in range(0, len(data), MAX_PAYLOAD):
            self.send(DATA, data[i:i + MAX_PAYLOAD])
        self.send(DATA)
        self.expect_ok()

    def get(self, path):
        self.send(GET, path.encode() + b"\0")
        chunks = []
        while True:
            typ, p = self.recv()
            if typ == ERROR:
                raise AgentError(p)
            assert typ == DATA, "GET answered with %s" % NAMES.get(typ)
            if not p:
                return b"".join(chunks)
            chunks.append(p)


class AgentError(Exception):
    def __init__(self, payload):
        self.errno, = struct.unpack_from("<I", payload)
        self.msg = payload[4:].rstrip(b"\0").decode(errors="replace")
        super().__init__("ERROR %d (%s): %s" % (self.errno, errno.errorcode.get(self.errno, "?"),
                                                self.msg))


# ---- the checks ---------------------------------------------------------------

failures = []
AGENT_PID = 0
BUSYBOX = os.environ.get("BUSYBOX", "/bin/busybox")


def check(name):
    def wrap(fn):
        def run(*a):
            t = time.time()
            try:
                fn(*a)
                print("ok   %-28s %.2fs" % (name, time.time() - t))
            except Exception as e:  # noqa: BLE001 - report every kind of failure
                failures.append(name)
                print("FAIL %-28s %s: %s" % (name, type(e).__name__, e))
        run.check_name = name
        return run
    return wrap


def expect_error(code, fn, *a):
    try:
        fn(*a)
    except AgentError as e:
        assert e.errno == code, "expected %s, got %s" % (errno.errorcode[code], e)
        return e
    raise AssertionError("expected ERROR %s, got success" % errno.errorcode[code])


@check("hello")
def t_hello(sock, work):
    c = Conn(sock, hello=False)
    ver, name = c.hello()
    assert (ver, name) == (1, "smolvm-agent"), (ver, name)
    c.close()


@check("exec output and status")
def t_exec(sock, work):
    c = Conn(sock)
    out, err, st, pid = c.run(["sh", "-c", "echo hi; echo err >&2; exit 3"])
    assert (out, err, st) == (b"hi\n", b"err\n", ("exited", 3)), (out, err, st)
    # the same connection serves the next request
    out, err, st, pid = c.run(["true"])
    assert st == ("exited", 0) and not out and not err
    c.close()


@check("exec killed by signals")
def t_signals(sock, work):
    c = Conn(sock)
    c.exec_start(["sleep", "100"])
    c.send(SIGNAL, struct.pack("<I", signal.SIGTERM))
    out, err, st = c.exec_wait()
    assert st == ("signaled", signal.SIGTERM), st
    out, err, st, pid = c.run(["sh", "-c", "kill -9 $$"])
    assert st == ("signaled", 9), st
    # the whole process group: sh and its sleep, which holds stdout open
    c.exec_start(["sh", "-c", "sleep 100; echo never"])
    time.sleep(0.2)
    c.send(SIGNAL, struct.pack("<I", signal.SIGKILL))
    out, err, st = c.exec_wait()
    assert st == ("signaled", 9) and out == b"", (st, out)
    c.close()


@check("exec environment")
def t_env(sock, work):
    c = Conn(sock)
    out, err, st, pid = c.run(["sh", "-c", 'echo "$FOO|$HOME|$PATH"'], env=["FOO=bar baz"])
    assert out == b"bar baz|/root|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n", out
    out, err, st, pid = c.run(["sh", "-c", 'echo "$HOME"'], env=["HOME=/tmp"])
    assert out == b"/tmp\n", out
    out, err, st, pid = c.run(["pwd"], cwd=work)
    assert out.decode().strip() == os.path.realpath(work), out
    out, err, st, pid = c.run(["pwd"])
    assert out == b"/\n", out
    # a PATH of the request is the one searched
    os.makedirs(os.path.join(work, "bin"), exist_ok=True)
    tool = os.path.join(work, "bin", "agent-test-tool")
    with open(tool, "w") as f:
        f.write("#!/bin/sh\necho tool\n")
    os.chmod(tool, 0o755)
    out, err, st, pid = c.run(["agent-test-tool"], env=["PATH=/nowhere:" + work + "/bin"])
    assert out == b"tool\n", (out, err, st)
    c.close()


@check("exec session, signal state")
def t_session(sock, work):
    c = Conn(sock)
    out, err, st, pid = c.run(["cat", "/proc/self/stat", "/proc/self/status"])
    fields = out.decode().split(")", 1)[1].split()
    ppid, pgrp, session = int(fields[1]), int(fields[2]), int(fields[3])
    assert pgrp == pid and session == pid, "pid %d pgrp %d session %d" % (pid, pgrp, session)
    status = dict(line.split(":", 1) for line in out.decode().split("\n") if ":" in line)
    for key in ("SigIgn", "SigBlk"):
        assert int(status[key].strip(), 16) == 0, "%s %s" % (key, status[key].strip())
    c.close()


@check("exec failures")
def t_exec_errors(sock, work):
    c = Conn(sock)
    e = expect_error(errno.ENOENT, c.exec_start, ["/no/such/binary"])
    assert "/no/such/binary" in e.msg, e.msg
    expect_error(errno.ENOENT, c.exec_start, ["no-such-command-anywhere"])
    e = expect_error(errno.ENOENT, c.exec_start, ["true"], (), "/no/such/dir")
    assert "/no/such/dir" in e.msg, e.msg
    expect_error(errno.EACCES, c.exec_start, [work])  # a directory
    # still usable
    out, err, st, pid = c.run(["echo", "after"])
    assert out == b"after\n"
    c.close()


@check("applets not on PATH")
def t_applets(sock, work):
    c = Conn(sock)
    nopath = ["PATH=/nowhere"]
    # not on PATH, in the list: busybox runs it by argv[0]'s name
    out, err, st, pid = c.run(["seq", "3"], env=nopath)
    assert (out, st) == (b"1\n2\n3\n", ("exited", 0)), (out, err, st)
    out, err, st, pid = c.run(["basename", "/a/b"], env=nopath)
    assert out == b"b\n", (out, err, st)
    # a busybox applet the list does not name, a name in no list
    expect_error(errno.ENOENT, c.exec_start, ["echo", "x"], nopath)
    e = expect_error(errno.ENOENT, c.exec_start, ["no-such-command-anywhere"])
    assert "no-such-command-anywhere" in e.msg, e.msg
    # what PATH has wins over the applet
    tool = os.path.join(work, "bin", "seq")
    os.makedirs(os.path.dirname(tool), exist_ok=True)
    with open(tool, "w") as f:
        f.write("#!/bin/sh\necho not-the-applet\n")
    os.chmod(tool, 0o755)
    out, err, st, pid = c.run(["seq", "3"], env=["PATH=" + os.path.dirname(tool)])
    assert out == b"not-the-applet\n", (out, err, st)
    # a path is never an applet
    expect_error(errno.ENOENT, c.exec_start, ["/nowhere/seq", "3"])
    c.close()


@check("4 MB through cat")
def t_cat(sock, work):
    c = Conn(sock)
    data = os.urandom(4 << 20)
    c.exec_start(["cat"])
    got = {}

    def reader():
        try:
            got["r"] = c.exec_wait()
        except Exception as e:  # noqa: BLE001
            got["e"] = e
    t = threading.Thread(target=reader)
    t.start()
    # odd sizes: frames that do not line up with the pipe's
    i, step = 0, 1
    while i < len(data):
        n = min(MAX_PAYLOAD, 1 + (step * 7919) % MAX_PAYLOAD)
        c.send(STDIN, data[i:i + n])
        i += n
        step += 1
    c.send(STDIN)
    t.join(60)
    assert "e" not in got, got.get("e")
    out, err, st = got["r"]
    assert st == ("exited", 0), st
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(data).hexdigest(), \
        "%d bytes back of %d" % (len(out), len(data))
    c.close()


@check("stdin closed early")
def t_stdin_epipe(sock, work):
    # head stops reading: the rest of stdin is dropped, nothing hangs
    c = Conn(sock)
    c.exec_start(["head", "-c", "10"])
    for _ in range(40):
        c.send(STDIN, b"x" * MAX_PAYLOAD)
    c.send(STDIN)
    out, err, st = c.exec_wait()
    assert out == b"x" * 10 and st == ("exited", 0), (out, st)
    c.close()


@check("put and get 3 MB")
def t_files(sock, work):
    c = Conn(sock)
    data = os.urandom(3 << 20)
    path = os.path.join(work, "files", "blob")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    c.put(path, data, 0o640)
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, oct(os.stat(path).st_mode)
    back = c.get(path)
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest(), len(back)
    # overwrite in place, and an empty file
    c.put(path, b"short", 0o600)
    assert c.get(path) == b"short"
    c.put(path + ".empty", b"")
    assert c.get(path + ".empty") == b""
    assert sorted(os.listdir(os.path.dirname(path))) == ["blob", "blob.empty"], \
        os.listdir(os.path.dirname(path))
    # directories: made, then accepted as they are
    d = os.path.join(work, "files", "sub")
    c.put(d, b"", stat.S_IFDIR | 0o750)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o750
    c.put(d, b"", stat.S_IFDIR | 0o755)
    e = expect_error(errno.EEXIST, c.put, path, b"", stat.S_IFDIR | 0o755)
    c.close()


@check("put and get errors")
def t_file_errors(sock, work):
    c = Conn(sock)
    e = expect_error(errno.ENOENT, c.put, os.path.join(work, "nodir", "f"), b"x" * 200000)
    assert "nodir" in e.msg, e.msg
    expect_error(errno.ENOENT, c.put, os.path.join(work, "nodir", "sub"), b"",
                 stat.S_IFDIR | 0o755)
    expect_error(errno.ENOENT, c.get, os.path.join(work, "nothing"))
    expect_error(errno.EISDIR, c.get, work)
    expect_error(errno.EINVAL, c.get, "/dev/null")
    # the connection is still in step
    out, err, st, pid = c.run(["echo", "ok"])
    assert out == b"ok\n"
    c.close()


@check("sync (dry)")
def t_sync(sock, work):
    c = Conn(sock)
    c.send(SYNC, struct.pack("<Q", time.time_ns()) + os.urandom(32))
    c.expect_ok()
    c.send(SYNC, struct.pack("<Q", 0) + b"short")
    typ, p = c.recv()
    assert typ == ERROR and AgentError(p).errno == errno.EPROTO
    assert c.expect_eof()
    c.close()


@check("two connections at once")
def t_concurrent(sock, work):
    a, b = Conn(sock), Conn(sock)
    a.exec_start(["sh", "-c", "read x; echo A$x"])
    out, err, st, pid = b.run(["echo", "B"])
    assert out == b"B\n"
    a.send(STDIN, b"1\n")
    out, err, st = a.exec_wait()
    assert out == b"A1\n" and st == ("exited", 0), (out, st)
    # and many at once, each with its own output
    conns = [Conn(sock) for _ in range(8)]
    for i, c in enumerate(conns):
        c.exec_start(["sh", "-c", "sleep 0.3; head -c %d /dev/zero | tr '\\0' %s" % (
            100000 + i, chr(ord("a") + i))])
        c.send(STDIN)
    for i, c in enumerate(conns):
        out, err, st = c.exec_wait()
        assert out == chr(ord("a") + i).encode() * (100000 + i), (i, len(out))
        c.close()
    a.close()
    b.close()


@check("malformed frames")
def t_malformed(sock, work):
    good = Conn(sock)
    good.exec_start(["sh", "-c", "read x; echo $x"])
    cases = [
        ("first frame not HELLO", False, HDR.pack(0, OK, 0, 0)),
        ("reserved bits", True, HDR.pack(0, GET, 0, 1)),
        ("flags", True, HDR.pack(0, GET, 1, 0)),
        ("type 0", True, HDR.pack(0, 0, 0, 0)),
        ("oversized", True, HDR.pack(MAX_PAYLOAD + 1, DATA, 0, 0)),
        ("EXEC without strings", True, HDR.pack(12, EXEC, 0, 0) + struct.pack("<III", 0, 1, 0)),
        ("EXEC argc 0", True, HDR.pack(13, EXEC, 0, 0) + struct.pack("<III", 0, 0, 0) + b"\0"),
        ("GET without NUL", True, HDR.pack(3, GET, 0, 0) + b"abc"),
        ("DATA out of place", True, HDR.pack(1, DATA, 0, 0) + b"x"),
        ("HELLO twice", True, HDR.pack(5, HELLO, 0, 0) + b"\1\0\0\0\0"),
        ("guest frame", True, HDR.pack(0, OK, 0, 0)),
    ]
    for what, hello, raw in cases:
        c = Conn(sock, hello=hello)
        c.s.sendall(raw)
        try:
            typ, p = c.recv()
        except Closed:
            raise AssertionError("%s: closed without an ERROR" % what)
        assert typ == ERROR, "%s: got %s" % (what, NAMES.get(typ))
        assert AgentError(p).errno == errno.EPROTO, "%s: %s" % (what, AgentError(p))
        assert c.expect_eof(), "%s: not closed" % what
        c.close()
    # EXEC while a command runs: the command goes too
    c = Conn(sock)
    pid = c.exec_start(["sleep", "100"])
    c.send(EXEC, struct.pack("<III", 0, 1, 0) + b"\0true\0")
    typ, p = c.recv()
    assert typ == ERROR and AgentError(p).errno == errno.EPROTO
    assert c.expect_eof()
    wait_gone(pid)
    # an unknown type is refused, and the connection goes on
    c = Conn(sock)
    c.send(200, b"future")
    typ, p = c.recv()
    assert typ == ERROR and AgentError(p).errno == errno.ENOSYS, AgentError(p)
    out, err, st, pid = c.run(["echo", "still"])
    assert out == b"still\n"
    c.close()
    # the first connection never noticed
    good.send(STDIN, b"fine\n")
    out, err, st = good.exec_wait()
    assert out == b"fine\n", out
    good.close()


def wait_gone(pid, secs=5):
    end = time.time() + secs
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("process %d still there" % pid)


@check("host goes away")
def t_hangup(sock, work):
    c = Conn(sock)
    pid = c.exec_start(["sh", "-c", "sleep 1000"])
    time.sleep(0.2)
    c.close()
    wait_gone(pid)
    # a half-sent frame, then gone
    c = Conn(sock)
    c.s.sendall(HDR.pack(100, EXEC, 0, 0) + b"\0\0")
    c.close()
    c = Conn(sock)
    out, err, st, pid = c.run(["echo", "alive"])
    assert out == b"alive\n"
    c.close()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@check("output queue bounded")
def t_bounded(sock, work):
    # 64 MB of output while the client does not read: the agent must not
    # hold it (it stops reading the pipe), and nothing is lost after
    c = Conn(sock)
    before = rss_kb(AGENT_PID)
    c.exec_start(["head", "-c", str(64 << 20), "/dev/zero"])
    c.send(STDIN)
    time.sleep(1.0)
    grew = rss_kb(AGENT_PID) - before
    assert grew < 8 << 10, "the agent grew by %d KiB" % grew
    out, err, st = c.exec_wait()
    assert len(out) == 64 << 20 and st == ("exited", 0), (len(out), st)
    c.close()


@check("connection limit")
def t_limit(sock, work):
    conns = [Conn(sock) for _ in range(64)]
    extra = Conn(sock, hello=False)
    typ, p = extra.recv()
    assert typ == ERROR and AgentError(p).errno == errno.EAGAIN, NAMES.get(typ)
    assert extra.expect_eof()
    extra.close()
    for c in conns:
        c.close()
    time.sleep(0.1)
    c = Conn(sock)
    out, err, st, pid = c.run(["echo", "room"])
    assert out == b"room\n"
    c.close()


@check("one byte at a time")
def t_slow(sock, work):
    c = Conn(sock, hello=False)
    frame = HDR.pack(16, HELLO, 0, 0) + struct.pack("<I", 1) + b"slow-client\0"
    for b in frame:
        c.s.send(bytes([b]))
        time.sleep(0.002)
    typ, p = c.recv()
    assert typ == HELLO
    c.close()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    agent, work = sys.argv[1], sys.argv[2]
    sock = os.path.join(work, "agent.sock")
    log = open(os.path.join(work, "agent.log"), "wb")

    def ignore_int():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    global AGENT_PID
    # applets as the guest's /init gives them: a list naming two of this
    # host's busybox applets (t_applets)
    applets = os.path.join(work, "applets")
    with open(applets, "w") as f:
        f.write("basename\nseq\n")
    proc = subprocess.Popen([agent, "--listen-unix", sock, "--dry-sync", "--busybox", BUSYBOX,
                             "--applets", applets], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, preexec_fn=ignore_int)
    AGENT_PID = proc.pid
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        order = ["hello", "exec", "signals", "env", "session", "exec_errors", "cat",
                 "stdin_epipe", "files", "file_errors", "sync", "concurrent", "malformed",
                 "applets", "hangup", "bounded", "limit", "slow"]
        checks = [globals()["t_" + n] for n in order]
        for fn in checks:
            if proc.poll() is not None:
                failures.append(fn.check_name)
                print("FAIL %-28s the agent exited (%d)" % (fn.check_name, proc.returncode))
                continue
            fn(sock, work)
        # SIGTERM: a clean exit that removes its socket
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
        if rc != 0 or os.path.exists(sock):
            failures.append("sigterm")
            print("FAIL %-28s exit %d, socket %s" % ("sigterm", rc,
                                                     "left" if os.path.exists(sock) else "gone"))
        else:
            print("ok   %-28s" % "sigterm")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.close()
    with open(os.path.join(work, "agent.log"), "rb") as f:
        text = f.read().decode(errors="replace")
    if text:
        print("agent said:\n" + text)
    if failures:
        print("failed: " + " ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
