#!/usr/bin/env python3
"""qmpsave.py SOCK FILE [--max-bandwidth B] -- QEMU ARGS...: QEMU's save, timed.

Run under tsrun.py by snapshot.sh and scale.sh. Starts QEMU (its console on
our stdout) with a QMP socket at SOCK, waits for EOF on stdin (tsrun.py
closes it the moment the guest printed the line to save at), then `stop`,
`migrate "exec:cat > FILE"`, polls query-migrate (1 ms) until it completed,
prints one "qmpsave: {json}" line on stderr (stop_ms, migrate_ms, QEMU's
total-time and downtime, the file's size) and quits QEMU.
migration.store-global-state=off: the file does not record the paused
state, so a QEMU restoring it with -incoming runs the guest once loaded.
--max-bandwidth B (bytes/s): migrate-set-parameters first (QEMU 7.2 limits
a migration to 128 MiB/s by default, a file too).
"""
import json, os, shlex, socket, subprocess, sys, time

args = sys.argv[1:]
sock, out = args[0], args[1]
rest = args[2:]
bandwidth = None
if rest and rest[0] == "--max-bandwidth":
    bandwidth = int(rest[1])
    rest = rest[2:]
if not rest or rest[0] != "--":
    sys.exit("usage: qmpsave.py SOCK FILE [--max-bandwidth B] -- QEMU ARGS...")
cmd = rest[1:]
q = subprocess.Popen(cmd + ["-global", "migration.store-global-state=off",
                            "-qmp", "unix:%s,server=on,wait=off" % sock], stdin=subprocess.DEVNULL)
for _ in range(2000):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sock)
        break
    except OSError:
        s.close()
        if q.poll() is not None:
            sys.exit("qmpsave: QEMU exited (%s)" % q.returncode)
        time.sleep(0.005)
else:
    sys.exit("qmpsave: no QMP socket")
f = s.makefile("rw")
def reply():
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
def qmp(c, **a):
    f.write(json.dumps({"execute": c, "arguments": a}) + "\n")
    f.flush()
    r = reply()
    if "error" in r:
        sys.exit("qmpsave: %s: %s" % (c, r["error"]))
    return r["return"]
reply()
qmp("qmp_capabilities")
if bandwidth:
    qmp("migrate-set-parameters", **{"max-bandwidth": bandwidth})
sys.stdin.read()
t0 = time.monotonic()
qmp("stop")
t1 = time.monotonic()
qmp("migrate", uri="exec:cat > " + shlex.quote(out))
while True:
    st = qmp("query-migrate")
    if st.get("status") in ("completed", "failed", "cancelled"):
        break
    time.sleep(0.001)
t2 = time.monotonic()
print("qmpsave: " + json.dumps({"status": st.get("status"), "stop_ms": (t1 - t0) * 1e3,
      "migrate_ms": (t2 - t1) * 1e3, "total_time_ms": st.get("total-time"),
      "downtime_ms": st.get("downtime"), "size": os.path.getsize(out)}), file=sys.stderr, flush=True)
qmp("quit")
q.wait(10)
