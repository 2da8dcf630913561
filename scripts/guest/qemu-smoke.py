#!/usr/bin/env python3
"""qemu-smoke.py OUTDIR [--kernel vmlinux|bzImage] [--initrd initramfs.cpio.gz]
               [--machine microvm|q35|pc] [--smp N] [--append EXTRA] [--timeout S]

Boots the default guest (OUTDIR/vmlinux + OUTDIR/initramfs.cpio.gz) under
QEMU with TCG (pure software emulation: works on any host, including those
whose KVM cannot boot Linux), drives the busybox shell on the serial console
and checks: 2 CPUs brought up, arithmetic, nproc, a pipeline, a background
job, 100 fork+exec, then ^D at the prompt must reset the machine and QEMU must
exit by itself. Prints the console transcript; exit status 0 = all passed.
"""
import argparse, os, re, select, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("outdir")
ap.add_argument("--kernel", default="vmlinux")
ap.add_argument("--initrd", default="initramfs.cpio.gz")
ap.add_argument("--machine", default="microvm")
ap.add_argument("--smp", type=int, default=2)
ap.add_argument("--append", default="")
ap.add_argument("--end", choices=["eof", "reboot", "poweroff", "exit"],
                default="eof", help="how to leave the shell (default: ^D)")
ap.add_argument("--timeout", type=float, default=120.0, help="per step")
args = ap.parse_args()

kernel = os.path.join(args.outdir, args.kernel)
initrd = os.path.join(args.outdir, args.initrd)
machine = {"microvm": "microvm,accel=tcg,acpi=off", "q35": "q35,accel=tcg",
           "pc": "pc,accel=tcg"}.get(args.machine, args.machine)
cmdline = ("console=ttyS0 reboot=k panic=-1 " + args.append).strip()
qemu = ["qemu-system-x86_64", "-M", machine, "-cpu", "max", "-m", "256M",
        "-smp", str(args.smp), "-display", "none", "-monitor", "none",
        "-serial", "stdio", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
        "-append", cmdline]
print("+ " + " ".join(qemu if " " not in cmdline else
                      qemu[:-1] + ["'%s'" % cmdline]), flush=True)

t0 = time.time()
p = subprocess.Popen(qemu, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, bufsize=0)
buf = b""
transcript = bytearray()
failures = []

def pump(timeout):
    global buf
    r, _, _ = select.select([p.stdout], [], [], timeout)
    if r:
        data = os.read(p.stdout.fileno(), 65536)
        if not data:
            return False
        sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()
        buf += data
        transcript.extend(data)
    return True

def expect(pattern, timeout=None, what=None):
    """Wait for regex pattern (bytes) in the output after the last match."""
    global buf
    deadline = time.time() + (timeout or args.timeout)
    rx = re.compile(pattern)
    while True:
        m = rx.search(buf)
        if m:
            buf = buf[m.end():]
            return m
        if time.time() > deadline or p.poll() is not None and not pump(0):
            failures.append("timeout waiting for %r (%s)" % (pattern, what or ""))
            raise TimeoutError(pattern)
        pump(0.2)

def send(s):
    p.stdin.write(s.encode())
    p.stdin.flush()

PROMPT = rb"# $|# \x1b"
def run(cmd, want, what):
    """Type a command line, check the output matches want."""
    send(cmd + "\n")
    try:
        m = expect(want, what=what)
        print("\n[smoke] OK   %s  (t=%.1fs)" % (what, time.time() - t0), flush=True)
    except TimeoutError:
        print("\n[smoke] FAIL %s" % what, flush=True)
        send("\n")
        return
    expect(rb"# ", what="prompt after " + what)

try:
    m = expect(rb"Brought up \d+ nodes?, (\d+) CPUs?", what="SMP bring-up")
    ncpu = int(m.group(1))
    if ncpu != args.smp:
        failures.append("kernel brought up %d CPUs, wanted %d" % (ncpu, args.smp))
    expect(rb"smolvm guest ready", what="init banner")
    print("\n[smoke] banner after %.1fs" % (time.time() - t0), flush=True)
    expect(rb"# ", what="shell prompt")
    run("echo answer: $((6*7))", rb"answer: 42", "arithmetic")
    run("nproc", rb"\n%d\r?\n" % args.smp, "nproc = %d" % args.smp)
    run("echo a-b-c | tr - + | sed 's/+/=/g'", rb"a=b=c", "pipeline")
    run("sleep 1 & wait $! && echo bg-done:$?", rb"bg-done:0", "background job")
    run("i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done; echo forks:$i",
        rb"forks:100", "100 fork+exec")
    run("hostname; cat /proc/mounts | wc -l; ls /dev/console",
        rb"smolvm\r?\n\s*\d+\r?\n/dev/console", "hostname, mounts, /dev")
    # ^C must reach a foreground job: needs a controlling tty + job control
    send("/bin/sleep 60\n")  # by path: not run as a NOFORK applet inside ash
    time.sleep(3)
    send("\x03")
    run("echo intr:$?", rb"intr:130", "^C interrupts a foreground job (ctty)")
    if b"job control turned off" in transcript:
        failures.append("shell says: job control turned off")
    quirks = "smolvm.quirks=1" in cmdline.split()
    run("tr '\\0' '\\n' < /proc/1/environ | grep -c '^GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,'",
        rb"\n%d\r?\n" % (1 if quirks else 0),
        "GLIBC_TUNABLES in PID 1 env %s" % ("set (quirks)" if quirks else "absent"))
    if args.end == "eof":
        send("\x04")                   # ^D at an empty prompt: end of input
    else:
        send(args.end + "\n")
    deadline = time.time() + args.timeout
    while p.poll() is None and time.time() < deadline:
        pump(0.2)
    while pump(0):
        pass
    if p.poll() is None:
        failures.append("QEMU did not exit after %s (no reset)" % args.end)
    else:
        print("\n[smoke] QEMU exited with %d after %.1fs (reset on %s)"
              % (p.returncode, time.time() - t0, args.end), flush=True)
except TimeoutError:
    pass
finally:
    if p.poll() is None:
        p.kill()
        p.wait()

if failures:
    print("\n[smoke] FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("\n[smoke] all checks passed")
