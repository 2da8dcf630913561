# virtio-net (libslirp user-mode NAT). Sourced by run.sh.
#
# Every packet stays on this machine: the guest talks to servers on the
# host's loopback through slirp's gateway 10.0.2.2, and the host reaches
# the guest through port forwards bound to 127.0.0.1. Servers the tests
# start are stopped by their PIDs; every wait is bounded.

# net_script NAME KERNEL CMDLINE NETOPTS [INITRD]: a machine script in $WORK
# with absolute paths, a uart and one virtio-net with options NETOPTS.
net_script() {
	machine_script "$1" "$2" "$3" "{ type = \"uart\" }, { type = \"virtio-net\", $4 }" "${5:-}"
}

net_linux_script() { # NAME NETOPTS
	net_script "$1" "$GUEST/vmlinux" "console=ttyS0 reboot=k panic=-1 random.trust_bootloader=on" \
		"$2" "$GUEST/initramfs.cpio"
}

net_linux_ready() {
	[ -f "$GUEST/vmlinux" ] && [ -f "$GUEST/initramfs.cpio" ] && return 0
	echo "missing $GUEST/vmlinux or initramfs.cpio: run 'make guest'"
	return 1
}

# Distinct ports on 127.0.0.1 that are free right now: net_free_ports tcp tcp udp
net_free_ports() {
	python3 - "$@" <<'PY'
import socket, sys
held = []
for kind in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}

# Host servers on the loopback, PIDs in NET_PIDS: HTTP on $1 serving
# $WORK/net-www (hello.txt holds $NET_TOKEN), DNS on udp $2 answering every
# A query with 10.9.8.7.
net_servers_start() {
	NET_PIDS=()
	NET_TOKEN="host-$RANDOM$RANDOM"
	mkdir -p "$WORK/net-www"
	echo "$NET_TOKEN" > "$WORK/net-www/hello.txt"
	python3 -m http.server --bind 127.0.0.1 --directory "$WORK/net-www" "$1" \
		> "$WORK/net-http.log" 2>&1 &
	NET_PIDS+=($!)
	[ -n "${2:-}" ] || return 0
	cat > "$WORK/net-dns.py" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.settimeout(600)
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12 or b"\0" not in q[12:]:
        continue
    end = q.index(b"\0", 12) + 5          # the question: name, type, class
    qtype = struct.unpack(">H", q[end - 4:end - 2])[0]
    answers = b""
    if qtype == 1:
        answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([10, 9, 8, 7])
    hdr = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1 if answers else 0, 0, 0)
    s.sendto(hdr + q[12:end] + answers, peer)
PY
	python3 "$WORK/net-dns.py" "$2" > "$WORK/net-dns.log" 2>&1 &
	NET_PIDS+=($!)
}

net_servers_stop() {
	kill "${NET_PIDS[@]}" 2>/dev/null
	wait "${NET_PIDS[@]}" 2>/dev/null
	NET_PIDS=()
}

# With the VM (PID $1, console log $2) running a guest that ends with
#   httpd -p 80 -h /tmp ; echo "net-$((40+2))-ready" ; nc -l -p 81 </dev/null
# and forwards 127.0.0.1:$3 -> :80 and 127.0.0.1:$4 -> :81: fetch
# /index.html through the first into NET_PAGE, then end the guest's nc through
# the second (it prints "bye-2") and wait for the VM; returns its status.
net_forward_and_finish() {
	local vm=$1 log=$2 fport=$3 eport=$4 i
	NET_PAGE=""
	while kill -0 "$vm" 2>/dev/null && ! grep -q '^net-42-ready' "$log"; do
		sleep 1
	done
	for i in $(seq 20); do
		kill -0 "$vm" 2>/dev/null || break
		NET_PAGE=$(timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$fport"' &&
			printf "GET /index.html HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null)
		[[ $NET_PAGE == *guest-42-page* ]] && break
		sleep 1
	done
	for i in $(seq 30); do
		kill -0 "$vm" 2>/dev/null || break
		timeout 5 bash -c 'echo "bye-$((1+1))" > /dev/tcp/127.0.0.1/'"$eport" 2>/dev/null
		sleep 2
		grep -q '^net-43-end' "$log" && break
	done
	wait "$vm"
}

# Options refused at create, each with a message that names the option;
# then a valid device on the fast ticker guest (no driver): it starts,
# binds its forwards and shuts down cleanly.
t_net_options() {
	need_kvm || return
	local log=$WORK/net-opt.log s rc port i
	local ticker=$GUEST/ticker.elf
	port=$(net_free_ports tcp)
	local -a opts=(
		'forward = { "tcp:127.0.0.1:80x-:80" }'
		'forward = { "tcp:127.0.0.1:'"$port"'-:80", "tcp:127.0.0.1:'"$port"'-:81" }'
		'forward = "sctp::1-:2"'
		'forward = { "tcp::8080-10.0.3.15:80" }'
		'mac = "01:00:5e:00:00:01"'
		'net = "10.0.2.1/24"'
		'mtu = 70000'
	)
	local -a want=(
		'virtio-net0: forward\[1\] "tcp:127.0.0.1:80x-:80": the host port must be 1 to 65535'
		"virtio-net0: forward\[2\]: cannot listen on tcp 127.0.0.1:$port: Address already in use"
		'virtio-net0: forward\[1\] "sctp::1-:2": expected "tcp|udp:'
		'virtio-net0: forward\[1\] "tcp::8080-10.0.3.15:80": the guest address is not'
		'virtio-net0: mac "01:00:5e:00:00:01": a multicast address'
		'virtio-net0: net "10.0.2.1/24": host bits are set'
		'virtio-net0: mtu "70000": expected 68 to 65520'
	)
	for i in "${!opts[@]}"; do
		s=$(net_script net-bad "$ticker" "" "${opts[$i]}")
		run "$log" 30 boot "$s" --append ticks=1
		rc=$?
		if [ $rc -ne 1 ] || ! grep -q "${want[$i]}" "$log"; then
			echo "${opts[$i]}: exit $rc"; show "$log"; return 1
		fi
	done
	s=$(net_script net-ok "$ticker" "" \
		'mac = "52:54:00:ab:cd:ef", net = "192.168.77.0/24", mtu = 9000,
		 forward = { "tcp:127.0.0.1:'"$port"'-:80", "udp:127.0.0.1:'"$port"'-192.168.77.15:53" }')
	run "$log" 30 boot "$s" --append ticks=2 -v
	rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^tick 1' "$log" ||
	   ! grep -q 'virtio-net0: info: mac 52:54:00:ab:cd:ef, net 192.168.77.0/24, mtu 9000 .* 2 forward' "$log"; then
		echo "valid options: exit $rc"; show "$log"; return 1
	fi
}

# One Linux boot: DHCP, TCP and UDP from the guest to servers on the host's
# loopback, and a TCP forward from the host into a server in the guest.
t_net_linux() {
	need_kvm || return
	net_linux_ready || return 1
	local log=$WORK/net-linux.log s rc vm hport dport fport eport
	read -r hport fport eport dport <<< "$(net_free_ports tcp tcp tcp udp)"
	net_servers_start "$hport" "$dport"
	s=$(net_linux_script net-linux \
		"forward = { \"tcp:127.0.0.1:$fport-:80\", \"tcp:127.0.0.1:$eport-:81\" }")
	# The console echoes the script: markers are computed in the guest.
	cat > "$WORK/net-guest.sh" <<SH
udhcpc -i eth0 -q -n -t 5 -T 2
wget -q -O - http://10.0.2.2:$hport/hello.txt
nslookup -type=a smolvm.test 10.0.2.2:$dport
echo "<p>guest-\$((6*7))-page</p>" > /tmp/index.html
httpd -p 80 -h /tmp
echo "net-\$((40+2))-ready"
nc -l -p 81 </dev/null
echo "net-\$((40+3))-end"
SH
	timeout -k 5 300 "$SMOLVM" boot "$s" < "$WORK/net-guest.sh" > "$log" 2>&1 &
	vm=$!
	net_forward_and_finish $vm "$log" "$fport" "$eport"
	rc=$?
	net_servers_stop

	local bad=""
	[ $rc -eq 0 ] || bad+=" exit=$rc"
	grep -q 'lease of 10.0.2.15 obtained from 10.0.2.2' "$log" || bad+=" dhcp"
	grep -q "^$NET_TOKEN" "$log" || bad+=" tcp-to-host"
	grep -q 'Address: 10.9.8.7' "$log" || bad+=" udp-to-host"
	[[ $NET_PAGE == *guest-42-page* ]] || bad+=" forward-into-guest"
	grep -q '^bye-2' "$log" || bad+=" forward-end"
	if [ -n "$bad" ]; then
		echo "failed:$bad"; show "$log" 40; return 1
	fi
	echo "dhcp 10.0.2.15, guest->host tcp+udp, host->guest forward: ok"
}

# Save and restore: a guest packed right after DHCP keeps its address and
# connections to the host work after `run`, forwards included (the device
# binds them again from the bundle's script).
t_net_snapshot() {
	need_kvm || return
	net_linux_ready || return 1
	if ! "$SMOLVM" help pack > /dev/null 2>&1; then
		echo "SKIP: this smolvm has no pack command"
		return 77
	fi
	local log=$WORK/net-run.log b=$WORK/net.smolmachine s rc vm hport fport eport
	read -r hport fport eport <<< "$(net_free_ports tcp tcp tcp)"
	s=$(net_linux_script net-snap \
		"forward = { \"tcp:127.0.0.1:$fport-:80\", \"tcp:127.0.0.1:$eport-:81\" }")
	printf 'udhcpc -i eth0 -q -n -t 5 -T 2\necho "net-$((1+1))-packed"\n' |
		SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 300 "$SMOLVM" pack "$s" \
		--ready "net-2-packed" -o "$b" > "$WORK/net-pack.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ] || ! grep -q 'lease of 10.0.2.15' "$WORK/net-pack.log"; then
		echo "pack: exit $rc"; show "$WORK/net-pack.log" 30; return 1
	fi
	net_servers_start "$hport"
	cat > "$WORK/net-run.sh" <<SH
wget -q -O - http://10.0.2.2:$hport/hello.txt
echo "<p>guest-\$((6*7))-page</p>" > /tmp/index.html
httpd -p 80 -h /tmp
echo "net-\$((40+2))-ready"
nc -l -p 81 </dev/null
echo "net-\$((40+3))-end"
SH
	SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 180 "$SMOLVM" run "$b" --pristine \
		< "$WORK/net-run.sh" > "$log" 2>&1 &
	vm=$!
	net_forward_and_finish $vm "$log" "$fport" "$eport"
	rc=$?
	net_servers_stop

	local bad=""
	[ $rc -eq 0 ] || bad+=" exit=$rc"
	grep -q "^$NET_TOKEN" "$log" || bad+=" tcp-to-host"
	[[ $NET_PAGE == *guest-42-page* ]] || bad+=" forward-into-guest"
	grep -q '^bye-2' "$log" || bad+=" forward-end"
	if [ -n "$bad" ]; then
		echo "after restore, failed:$bad"; show "$log" 30; return 1
	fi
}
