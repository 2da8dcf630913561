#!/usr/bin/env python3
"""tsrun.py: run one VMM process and timestamp its console output.

    tsrun.py [options] -- COMMAND [ARGS...]

Starts COMMAND under `timeout -k 5 T` in a new session, reads its stdout and
stderr as they arrive and stamps every line with a monotonic time relative to
the moment just before the fork (t = 0). Prints one JSON object on stdout:

  exit_s        time at which the process exited (null if we had to kill it)
  rc            exit status (124 = `timeout` fired, negative = killed by signal)
  stopped_by    name of the --stop-after mark that made us end it, or null
  first_out_s   first byte on stdout (the guest console)
  marks         {name: seconds} first match of each --mark / --mark-err regex
  marks_cpu     {name: seconds} CPU time (user+sys) the VMM had used by then
  cpu_s         CPU time (user+sys) of the whole VMM run
  out, err      [[seconds, line, cpu], ...]  (a trailing partial line is
                included; cpu: the VMM's CPU time then, null once it exited)
  mem           with --sample-ms: peak memory figures, see below

Marks are tested against the current line as bytes arrive, so a shell prompt
without a newline matches too; a line's timestamp is the time its newline
(or, for a partial line, its last byte) arrived.

Memory (--sample-ms MS --guest-mib M): every MS ms, /proc/VMM/status and
/proc/VMM/smaps of the VMM (the child of `timeout`) are read. The guest RAM
mapping is the private anonymous rw mapping whose size is exactly M MiB; its
Rss is the guest memory the guest (or the VMM, loading it) touched. Reported:
vmhwm_kib (kernel's peak RSS, last sample), peak_rss_kib and the breakdown at
that sample (guest_rss_kib, overhead_kib = VmRSS - guest_rss, anon/file/shmem),
peak_overhead_kib (max over samples), samples. (wait4's ru_maxrss is no use
here: it also holds the RSS of the forked Python before `timeout` was exec'd.)

--send-after NAME=TEXT writes TEXT to the VMM's stdin (a pipe) once mark NAME
fired; --close-stdin-after NAME closes that pipe then (EOF). --signal-after
NAME=SIG sends signal SIG (USR1, TERM, ...) to the VMM once mark NAME fired.

Always leaves nothing behind: the whole process group is SIGKILLed at the end.
"""
import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--mark", action="append", default=[], metavar="NAME=REGEX",
                    help="first stdout line matching REGEX")
    ap.add_argument("--mark-err", action="append", default=[], metavar="NAME=REGEX",
                    help="first stderr line matching REGEX")
    ap.add_argument("--stop-after", action="append", default=[], metavar="NAME:SECS",
                    help="end the run SECS after mark NAME fired")
    ap.add_argument("--close-stdin-after", metavar="NAME",
                    help="stdin is a pipe, closed (EOF) once mark NAME fired; "
                         "otherwise stdin is /dev/null")
    ap.add_argument("--send-after", action="append", default=[], metavar="NAME=TEXT",
                    help="stdin is a pipe; TEXT (\\n for a newline) is written to "
                         "it once mark NAME fired")
    ap.add_argument("--signal-after", action="append", default=[], metavar="NAME=SIG",
                    help="send signal SIG (e.g. USR1) to the VMM once mark NAME fired")
    ap.add_argument("--sample-ms", type=float, default=0.0)
    ap.add_argument("--guest-mib", type=int, default=0)
    ap.add_argument("--max-lines", type=int, default=2000)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if a.cmd and a.cmd[0] == "--":
        a.cmd = a.cmd[1:]
    if not a.cmd:
        ap.error("no command")
    return a


def kv_regex(specs):
    out = []
    for s in specs:
        name, _, rx = s.partition("=")
        out.append((name, re.compile(rx)))
    return out


def child_of(pid):
    """First child pid of pid (the VMM under `timeout`), or None."""
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
    except OSError:
        pass
    return None


def read_status(pid):
    d = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                d[k] = int(v.split()[0])
    return d


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime + stime of all of pid's threads, seconds (1/CLK_TCK resolution)."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def guest_rss(pid, guest_kib):
    """Rss (KiB) of the anonymous private mapping of exactly guest_kib KiB."""
    best = None
    cur_match = False
    size = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                parts = line.split()
                # address perms offset dev inode [path]
                cur_match = (len(parts) == 5 and parts[1].startswith("rw")
                             and parts[1].endswith("p") and parts[4] == "0")
                size = None
            elif line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:") and cur_match and size == guest_kib:
                rss = int(line.split()[1])
                best = rss if best is None else max(best, rss)
    return best


def main():
    a = parse_args()
    marks_out = kv_regex(a.mark)
    marks_err = kv_regex(a.mark_err)
    stops = {}
    for s in a.stop_after:
        name, _, secs = s.partition(":")
        stops[name] = float(secs or 0)
    marks = {}
    marks_cpu = {}
    res = {"cmd": a.cmd, "exit_s": None, "rc": None, "stopped_by": None,
           "first_out_s": None, "marks": marks, "marks_cpu": marks_cpu, "cpu_s": None,
           "out": [], "err": []}

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sends = {}
    for spec in a.send_after:
        name, _, text = spec.partition("=")
        sends[name] = text.replace("\\n", "\n").encode()
    sigs = {}
    for spec in a.signal_after:
        name, _, sig = spec.partition("=")
        sigs[name] = signal.Signals["SIG" + sig.upper().removeprefix("SIG")]
    stdin = subprocess.PIPE if a.close_stdin_after or sends else subprocess.DEVNULL
    t0 = time.monotonic()
    p = subprocess.Popen(["timeout", "-k", "5", str(a.timeout)] + a.cmd,
                         stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, bufsize=0)
    now = lambda: time.monotonic() - t0
    pidfd = os.pidfd_open(p.pid)
    fds = {p.stdout.fileno(): ("out", marks_out, bytearray()),
           p.stderr.fileno(): ("err", marks_err, bytearray())}
    stop_at = None
    vmm = None
    guest_kib = a.guest_mib * 1024
    mem = {"samples": 0, "peak_rss_kib": 0, "peak_overhead_kib": 0, "vmhwm_kib": 0}
    next_sample = 0.0
    exited = False
    status = None

    def add_line(stream, buf, partial=False):
        text = buf.decode("utf-8", "replace").rstrip("\r\n")
        lst = res[stream]
        if len(lst) < a.max_lines:
            lst.append([round(now(), 6), text, vmm_cpu()])
        elif len(lst) == a.max_lines:
            lst.append([round(now(), 6), "... (more lines dropped)"])

    def check_marks(stream, rxs, buf):
        nonlocal stop_at
        text = buf.decode("utf-8", "replace")
        for name, rx in rxs:
            if name not in marks and rx.search(text):
                marks[name] = round(now(), 6)
                c = vmm_cpu()
                if c is not None:
                    marks_cpu[name] = c
                if name in stops and stop_at is None:
                    stop_at = (now() + stops[name], name)
                if name in sends and p.stdin and not p.stdin.closed:
                    try:
                        p.stdin.write(sends[name])
                    except OSError:
                        pass
                if name in sigs and find_vmm() is not None:
                    try:
                        os.kill(vmm, sigs[name])
                    except OSError:
                        pass
                if a.close_stdin_after == name and p.stdin and not p.stdin.closed:
                    try:
                        p.stdin.close()
                    except OSError:
                        pass

    def find_vmm():
        nonlocal vmm
        if vmm is None:
            vmm = child_of(p.pid)
            if vmm is not None:
                res["vmm_pid"] = vmm
        return vmm

    def vmm_cpu():
        if exited or find_vmm() is None:
            return None
        try:
            return proc_cpu(vmm)
        except (OSError, ValueError, IndexError):
            return None

    def sample():
        if find_vmm() is None:
            return
        try:
            st = read_status(vmm)
            g = guest_rss(vmm, guest_kib) if guest_kib else None
        except (OSError, ValueError):
            return
        mem["samples"] += 1
        mem["vmhwm_kib"] = max(mem["vmhwm_kib"], st.get("VmHWM", 0))
        rss = st.get("VmRSS", 0)
        ov = rss - (g or 0)
        mem["peak_overhead_kib"] = max(mem["peak_overhead_kib"], ov)
        if rss >= mem["peak_rss_kib"]:
            mem.update(peak_rss_kib=rss, guest_rss_kib=g, overhead_kib=ov,
                       anon_kib=st.get("RssAnon"), file_kib=st.get("RssFile"),
                       shmem_kib=st.get("RssShmem"))

    try:
        open_fds = set(fds)
        while open_fds or not exited:
            timeout = 0.25
            if a.sample_ms > 0 and not exited:
                if now() >= next_sample:
                    sample()
                    next_sample = now() + a.sample_ms / 1000.0
                timeout = min(timeout, max(0.0, next_sample - now()))
            if stop_at is not None:
                if now() >= stop_at[0]:
                    res["stopped_by"] = stop_at[1]
                    break
                timeout = min(timeout, max(0.0, stop_at[0] - now()))
            rl = list(open_fds) + ([] if exited else [pidfd])
            r, _, _ = select.select(rl, [], [], timeout)
            t = now()
            for fd in r:
                if fd == pidfd:
                    exited = True
                    res["exit_s"] = round(t, 6)
                    continue
                data = os.read(fd, 65536)
                stream, rxs, buf = fds[fd]
                if not data:
                    open_fds.discard(fd)
                    if buf:
                        check_marks(stream, rxs, buf)
                        add_line(stream, buf, partial=True)
                        buf.clear()
                    continue
                if stream == "out" and res["first_out_s"] is None:
                    res["first_out_s"] = round(t, 6)
                while data:
                    nl = data.find(b"\n")
                    if nl < 0:
                        buf.extend(data)
                        check_marks(stream, rxs, buf)
                        break
                    buf.extend(data[:nl + 1])
                    data = data[nl + 1:]
                    check_marks(stream, rxs, buf)
                    add_line(stream, buf)
                    buf.clear()
    finally:
        last_cpu = vmm_cpu()   # the VMM still runs only if we end it now
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status, ru = os.wait4(p.pid, 0)
        for stream, key in (("out", p.stdout.fileno()), ("err", p.stderr.fileno())):
            buf = fds[key][2]
            if buf:
                add_line(stream, buf, partial=True)
        os.close(pidfd)

    res["rc"] = (os.WEXITSTATUS(status) if os.WIFEXITED(status)
                 else -os.WTERMSIG(status))
    # CPU time (user + sys) of the VMM: when it exited by itself, from wait4
    # (`timeout` waited for it, so its times are folded into timeout's; the
    # few ms of `timeout` itself are included); when we killed it, from its
    # /proc/PID/stat just before.
    res["cpu_s"] = (round(last_cpu, 3) if last_cpu is not None
                    else round(ru.ru_utime + ru.ru_stime, 6))
    if a.sample_ms > 0:
        res["mem"] = mem
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
