# virtio-vsock (plugins/virtio-vsock) with the vsock test guest
# (build/guest/vsock.elf, tests/guests/vsock.c): the guest echoes every byte
# of connections to its port 1234; the host side is the device's Unix
# socket ("CONNECT <port>\n" -> "OK <hostport>\n"). Sourced by run.sh.

VSOCK_ELF=$GUEST/vsock.elf

# vsock_need: KVM, the guest, the plugin and python3, or a SKIP (77).
vsock_need() {
	need_kvm || return
	[ -f "$VSOCK_ELF" ] || { echo "missing $VSOCK_ELF (make test-guests)"; return 1; }
	# The plugin is ours and built by make: missing is a failure, not a skip.
	timeout 10 "$SMOLVM" plugins 2>/dev/null | awk '{print $1}' | grep -qx virtio-vsock || {
		echo "virtio-vsock plugin not found (not listed by '$SMOLVM plugins')"
		return 1
	}
	command -v python3 > /dev/null || { echo "SKIP: no python3 for the host side"; return 77; }
	vsock_client > /dev/null
}

# vsock_script NAME CMDLINE DEVICE-OPTIONS: a machine script in $WORK.
vsock_script() {
	cat > "$WORK/$1.lua" <<LUA
machine {
  name = "$1",
  memory = "64M",
  kernel = "$(realpath "$VSOCK_ELF")",
  cmdline = "$2",
  devices = { { type = "uart" }, { type = "virtio-vsock", $3 } },
}
LUA
	echo "$WORK/$1.lua"
}

# vsock_wait LOG TEXT SECONDS: until LOG has a line with TEXT (fixed string).
vsock_wait() {
	local i
	for i in $(seq $(($3 * 10))); do
		grep -qF -- "$2" "$1" && return 0
		sleep 0.1
	done
	echo "no '$2' in $3 s"; show "$1" 30; return 1
}

# vsock_expect LOG TEXT...: each text is in LOG (fixed strings).
vsock_expect() {
	local log=$1 l
	shift
	for l in "$@"; do
		grep -qF -- "$l" "$log" || { echo "missing '$l'"; show "$log" 30; return 1; }
	done
}

# vsock_stop PID: ends a background smolvm (started through timeout).
vsock_stop() {
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# The host side, in python: $WORK/vsock_client.py MODE ARGS (see the modes).
vsock_client() {
	local py=$WORK/vsock_client.py
	[ -f "$py" ] || cat > "$py" <<'PY'
import hashlib, os, socket, sys, threading, time

def dial(path, timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s

def read_line(s):
    """The device's answer: b"OK <port>\\n", or None on end of file."""
    line = b""
    while not line.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            return None
        line += d
    return line

def read_all(s, limit=1 << 20):
    out = b""
    while len(out) < limit:
        d = s.recv(65536)
        if not d:
            break
        out += d
    return out

def echo_one(path, port, n, res, i):
    try:
        s = dial(path, 60)
        s.sendall(b"CONNECT %d\n" % port)
        line = read_line(s)
        if not line or not line.startswith(b"OK ") or not line[3:-1].isdigit():
            res[i] = "answer %r" % line
            return
        data = os.urandom(n)
        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)   # half-close: the echo still comes back
        t0 = time.time()
        th = threading.Thread(target=send)
        th.start()
        h, got = hashlib.sha256(), 0
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            h.update(d)
            got += len(d)
        th.join()
        dt = time.time() - t0
        s.close()
        if got != n or h.hexdigest() != hashlib.sha256(data).hexdigest():
            res[i] = "%d of %d bytes came back, sha256 %s" % (got, n, "differs" if got == n else "-")
        else:
            res[i] = (dt, line.strip().decode())
    except Exception as e:
        res[i] = "%s: %s" % (type(e).__name__, e)

def mode_echo(path, port, n, conns="1"):
    port, n, k = int(port), int(n), int(conns)
    res = [None] * k
    t0 = time.time()
    ths = [threading.Thread(target=echo_one, args=(path, port, n, res, i)) for i in range(k)]
    for t in ths: t.start()
    for t in ths: t.join()
    dt = time.time() - t0
    bad = [r for r in res if not isinstance(r, tuple)]
    if bad:
        sys.exit("echo: %s" % "; ".join(map(str, bad)))
    xfer = max(r[0] for r in res)  # from the first byte sent to the last received
    print("echo: %d connection(s) x %d bytes, sha256 equal, %.3f s, %.1f MB/s each way (%s)"
          % (k, n, xfer, k * n / xfer / 1e6, ", ".join(r[1] for r in res)))

def mode_slowreader(path, port, n):
    """The reader waits: the device must hold back (credit) without losing a byte."""
    n = int(n)
    s = dial(path, 60)
    s.sendall(b"CONNECT %d\n" % int(port))
    line = read_line(s)
    if not line or not line.startswith(b"OK "):
        sys.exit("slow reader: answer %r" % line)
    data = os.urandom(n)
    sent = [0]
    def send():
        view = memoryview(data)
        while sent[0] < n:
            sent[0] += s.send(view[sent[0]:sent[0] + 65536])
        s.shutdown(socket.SHUT_WR)
    th = threading.Thread(target=send)
    th.start()
    time.sleep(1.5)
    stalled = sent[0]
    h, got = hashlib.sha256(), 0
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        h.update(d)
        got += len(d)
    th.join()
    if got != n or h.hexdigest() != hashlib.sha256(data).hexdigest():
        sys.exit("slow reader: %d of %d bytes came back%s" % (got, n, ", sha256 differs" if got == n else ""))
    if stalled >= n:
        sys.exit("slow reader: all %d bytes were taken while nobody read the echo" % n)
    print("slow reader: the sender stalled after %d of %d bytes while nobody read; all came back" % (stalled, n))

def mode_closer(path, port):
    """The guest closes first (port 1235 says "bye" and closes) while we send."""
    s = dial(path, 20)
    s.sendall(b"CONNECT %d\n" % int(port))
    if not (read_line(s) or b"").startswith(b"OK "):
        sys.exit("closer: no OK")
    def send():
        try:
            for _ in range(64):
                s.sendall(os.urandom(16384))
        except OSError:
            pass   # the device closed: EPIPE
    th = threading.Thread(target=send)
    th.start()
    out = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            out += d
    except ConnectionResetError:
        pass       # what we kept sending was never read
    th.join()
    if out != b"bye\n":
        sys.exit("closer: got %r, expected b'bye\\n' then the end" % out[:64])
    print("closer: the guest closed first; 'bye' then end of file")

def mode_abort(path, port):
    """Writes and closes without reading: the device must cope, and go on."""
    for _ in range(3):
        s = dial(path, 10)
        s.sendall(b"CONNECT %d\n" % int(port))
        if not (read_line(s) or b"").startswith(b"OK "):
            sys.exit("abort: no OK")
        s.sendall(os.urandom(300000))
        s.close()
    time.sleep(0.5)
    mode_echo(path, port, 100000)
    print("abort: 3 connections closed mid-stream, the next one works")

def expect_eof(path, data, what):
    s = dial(path, 10)
    s.sendall(data)
    try:
        out = read_all(s)
    except ConnectionResetError:
        sys.exit("%s: connection reset instead of end of file" % what)
    if out:
        sys.exit("%s: got %r, expected end of file" % (what, out))

def mode_refused(path, port):
    expect_eof(path, b"CONNECT %d\n" % int(port), "CONNECT to a port without listener")
    print("refused: CONNECT %s: end of file, no OK" % port)

def mode_badlines(path):
    for data in [b"HELLO 1234\n", b"CONNECT\n", b"CONNECT 12x4\n", b"CONNECT -1\n",
                 b"CONNECT 4294967296\n", b"connect 1234\n", b"CONNECT 1234" + b" " * 60,
                 b"CONNECT " + b"1" * 70]:
        expect_eof(path, data, "line %r" % data)
    # early data right after the line, and \r\n
    s = dial(path, 10)
    s.sendall(b"CONNECT 1234\r\nearly")
    line = read_line(s)
    if not line or not line.startswith(b"OK "):
        sys.exit("CONNECT with \\r\\n: answer %r" % line)
    s.shutdown(socket.SHUT_WR)
    out = read_all(s)
    if out != b"early":
        sys.exit("bytes sent with the CONNECT line: echo %r" % out)
    print("bad lines: 8 malformed CONNECT lines closed; \\r\\n and early data fine")

def mode_flood(path, port):
    socks = [dial(path, None) for _ in range(70)]
    time.sleep(1)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
    for s in socks:
        s.close()
    if closed != 6:
        sys.exit("70 connections: %d closed at once, expected 6 (64 allowed)" % closed)
    time.sleep(0.5)
    mode_echo(path, port, 1000)
    print("flood: 70 connections, 64 held, 6 closed at once; a new one works after")

def mode_hold(path, port):
    s = dial(path, 120)
    s.sendall(b"CONNECT %d\n" % int(port))
    try:
        read_all(s)
    except OSError:
        pass

def mode_pong(path):
    """Guest-initiated connections: answers a line with "pong: " + the line, closes."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    l.bind(path)
    l.listen(4)
    l.settimeout(120)
    try:
        while True:
            c, _ = l.accept()
            c.settimeout(10)
            line = b""
            while not line.endswith(b"\n"):
                d = c.recv(4096)
                if not d:
                    break
                line += d
            c.sendall(b"pong: " + line)
            c.close()
    except socket.timeout:
        pass

modes = {"echo": mode_echo, "refused": mode_refused, "badlines": mode_badlines,
         "flood": mode_flood, "hold": mode_hold, "pong": mode_pong,
         "slowreader": mode_slowreader, "abort": mode_abort, "closer": mode_closer}
if __name__ == "__main__":
    modes[sys.argv[1]](*sys.argv[2:])
PY
	echo "$py"
}

# The guest's own checks, a 4 MB echo, parallel connections, refusals,
# malformed CONNECT lines, the connection limit; the socket goes at the end.
t_vsock_echo() {
	vsock_need || return
	local sock=$WORK/vs.sock log=$WORK/vsock.log py s pong vm rc=0
	py=$(vsock_client)
	python3 "$py" pong "${sock}_5000" > "$WORK/vsock-pong.log" 2>&1 < /dev/null &
	pong=$!
	for _ in $(seq 50); do [ -S "${sock}_5000" ] && break; sleep 0.1; done
	s=$(vsock_script vsock "hostport=5000 fuzz=3000" "socket = \"$sock\", cid = 42")
	timeout -k 5 120 "$SMOLVM" boot "$s" > "$log" 2>&1 < /dev/null &
	vm=$!
	if vsock_wait "$log" "vsock: listening on port 1234" 30 &&
	   vsock_expect "$log" "vsock: cid 42," "PASS: vsock hostile packets" \
		"PASS: vsock guest connect (host port 5000" "PASS: vsock guest connect refused" \
		"PASS: vsock random packets"; then
		python3 "$py" echo "$sock" 1234 4000000 &&
			python3 "$py" echo "$sock" 1234 500000 3 &&
			python3 "$py" slowreader "$sock" 1234 8000000 &&
			python3 "$py" abort "$sock" 1234 &&
			python3 "$py" closer "$sock" 1235 &&
			python3 "$py" echo "$sock" 1234 100000 &&
			python3 "$py" refused "$sock" 4321 &&
			python3 "$py" badlines "$sock" &&
			python3 "$py" flood "$sock" 1234 || rc=1
	else
		rc=1
	fi
	sleep 0.5
	vsock_stop "$vm"
	kill "$pong" 2>/dev/null
	wait "$pong" 2>/dev/null
	if grep -q '^FAIL' "$log" || grep -q 'device needs reset' "$log"; then
		show "$log" 30; rc=1
	fi
	if [ $rc -eq 0 ]; then
		vsock_expect "$log" "connection from host port 1024 closed, 4000000 bytes echoed" \
			"vsock: refused a connection to port 4321 (RST)" || rc=1
	fi
	[ -e "$sock" ] && { echo "$sock still there after the machine ended"; rc=1; }
	[ $rc -ne 0 ] && show "$log" 15
	grep '^PASS: vsock random' "$log"
	return $rc
}

# Bad options and a socket path that is taken are refused, naming why.
t_vsock_options() {
	vsock_need || return
	local log=$WORK/vsock-opt.log file=$WORK/notasocket s lpid rc=0
	s=$(vsock_script vsopt1 "" "socket = \"$WORK/o.sock\", cid = 2")
	run "$log" 20 boot "$s"
	grep -q 'virtio-vsock0: cid: expected a guest CID from 3 to 4294967294, got "2"' "$log" ||
		{ show "$log"; rc=1; }
	s=$(vsock_script vsopt2 "" "socket = \"$WORK/o.sock\", cid = 4294967295")
	run "$log" 20 boot "$s"
	grep -q 'cid: expected a guest CID' "$log" || { show "$log"; rc=1; }
	echo "precious" > "$file"
	s=$(vsock_script vsopt3 "" "socket = \"$file\"")
	run "$log" 20 boot "$s"
	if ! grep -q "socket: $file exists and is not a socket; not removing it" "$log" ||
	   [ "$(cat "$file")" != precious ]; then
		show "$log"; rc=1
	fi
	python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); time.sleep(30)' \
		"$WORK/taken.sock" &
	lpid=$!
	for _ in $(seq 50); do [ -S "$WORK/taken.sock" ] && break; sleep 0.1; done
	s=$(vsock_script vsopt4 "" "socket = \"$WORK/taken.sock\"")
	run "$log" 20 boot "$s"
	grep -q "socket: $WORK/taken.sock is in use" "$log" || { show "$log"; rc=1; }
	kill "$lpid" 2>/dev/null
	wait "$lpid" 2>/dev/null
	return $rc
}

# Pack with a connection open, restore: no connection survives, the guest
# hears TRANSPORT_RESET and drops its own, the socket is bound again and
# echo works.
t_vsock_snapshot() {
	vsock_need || return
	local sock=$WORK/vsnap.sock b=$WORK/vsock.smolmachine log=$WORK/vsnap-pack.log py s pack vm rc=0
	py=$(vsock_client)
	s=$(vsock_script vsnap "" "socket = \"$sock\"")
	SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 60 "$SMOLVM" pack "$s" --ready "vsock: accepted" \
		-o "$b" > "$log" 2>&1 < /dev/null &
	pack=$!
	vsock_wait "$log" "vsock: listening on port 1234" 30 || { vsock_stop "$pack"; return 1; }
	timeout 60 python3 "$py" hold "$sock" 1234 &
	local hold=$!
	wait "$pack" || { echo "pack failed"; show "$log"; rc=1; }
	wait "$hold" 2>/dev/null
	[ $rc -eq 0 ] || return 1
	[ -e "$sock" ] && { echo "$sock still there after pack"; return 1; }
	log=$WORK/vsnap-run.log
	SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 60 "$SMOLVM" run "$b" --pristine > "$log" 2>&1 < /dev/null &
	vm=$!
	if vsock_wait "$log" "vsock: transport reset: dropped 1 connection(s)" 30; then
		python3 "$py" echo "$sock" 1234 1000000 || rc=1
	else
		rc=1
	fi
	sleep 0.3
	vsock_stop "$vm"
	if grep -q '^FAIL' "$log" || grep -q 'has not taken the transport reset' "$log"; then
		show "$log"; rc=1
	fi
	[ $rc -eq 0 ] && vsock_expect "$log" "bytes echoed" || { show "$log"; rc=1; }
	return $rc
}
