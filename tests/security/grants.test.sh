# Grants: a bundle from someone else names devices, not host resources.
# The attacker's machine (another data directory) asks for a host file as
# its disk, a port forward on the host and a socket path; as the victim
# each needs the user's say-so. Ticker guest: the devices exist (the host
# side is what matters) while it ticks. Sourced by run.sh.

# is_listening PORT: something accepts on 127.0.0.1:PORT
is_listening() {
	python3 -c 'import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0)' "$1"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

grants_bundle() {
	local b=$WORK/greedy.smolmachine ticker
	if [ ! -f "$b" ]; then
		ticker=$(realpath "$GUEST/ticker.elf")
		head -c 1048576 /dev/urandom > "$WORK/secret.img"
		GR_PORT=$(free_port)
		echo "$GR_PORT" > "$WORK/greedy.port"
		free_port > "$WORK/greedy.port2"
		free_port > "$WORK/greedy.port3"
		cat > "$WORK/greedy.lua" <<LUA
machine {
  name = "greedy", memory = "16M", kernel = "$ticker", cmdline = "ticks=80",
  ready = "tick 2",
  devices = {
    { type = "uart" },
    { type = "virtio-blk", path = "$WORK/secret.img", readonly = true, serial = "data" },
    { type = "virtio-net", forward = { "tcp:127.0.0.1:$GR_PORT-:80",
      "tcp:127.0.0.1:$(cat "$WORK/greedy.port2")-:81", "tcp:127.0.0.1:$(cat "$WORK/greedy.port3")-:82" } },
    { type = "virtio-vsock", socket = "$WORK/greedy.sock" },
  },
}
LUA
		SMOLVM_DATA_DIR=$WORK/attacker-data SMOLVM_CACHE_DIR=$WORK/cache \
			run "$WORK/greedy-pack.log" 60 pack "$WORK/greedy.lua" -o "$b" ||
			{ show "$WORK/greedy-pack.log"; return 1; }
		rm -f "$WORK/greedy.sock"
	fi
	echo "$b"
}

# grun LOG ARGS...: the victim runs the bundle in the background for a
# moment; PROBE (a command) runs while it ticks, its status is returned
grun() {
	local log=$1 probe=$2 pid rc
	shift 2
	SMOLVM_DATA_DIR=$WORK/victim-data SMOLVM_CACHE_DIR=$WORK/cache "$SMOLVM" run --pristine "$@" \
		< /dev/null > "$log" 2>&1 &
	pid=$!
	sleep 1.5
	eval "$probe"
	rc=$?
	wait $pid
	return $rc
}

t_sec_grants() {
	need_kvm || return
	virtio_have virtio-blk && virtio_have virtio-net && virtio_have virtio-vsock ||
		{ echo "SKIP: needs the virtio-blk, -net and -vsock plugins"; return 77; }
	local b port p2
	b=$(grants_bundle) || return 1
	port=$(cat "$WORK/greedy.port")
	p2=$(free_port)
	# no grant: it runs on the disk it carries, never on the host file its
	# script names (gone here: the victim has no such file)
	mv "$WORK/secret.img" "$WORK/secret.bak"
	grun "$WORK/g0.log" "[ ! -e $WORK/secret.img ] && [ ! -e $WORK/greedy.sock ]" "$b" &&
		grep -q "^tick 79" "$WORK/g0.log" || { echo "its own disk:"; show "$WORK/g0.log"; return 1; }
	mv "$WORK/secret.bak" "$WORK/secret.img"
	# the user's own copy of the disk: it runs, but no port on the host, no
	# socket where the bundle wanted one, no host loopback
	cp "$WORK/secret.img" "$WORK/mine.img"
	grun "$WORK/g1.log" "! is_listening $port && ! is_listening $(cat "$WORK/greedy.port2") &&
		! is_listening $(cat "$WORK/greedy.port3") && [ ! -e $WORK/greedy.sock ]" \
		--disk "data=$WORK/mine.img:ro" "$b" ||
		{ echo "port $port or the socket was opened"; show "$WORK/g1.log"; return 1; }
	grep -q "its port forwards are not opened" "$WORK/g1.log" && grep -q "^tick 79" "$WORK/g1.log" ||
		{ show "$WORK/g1.log"; return 1; }
	# --publish opens the user's port instead
	grun "$WORK/g2.log" "is_listening $p2 && ! is_listening $port" \
		--disk "data=$WORK/mine.img:ro" --publish "$p2:80" "$b" ||
		{ echo "--publish $p2:80"; show "$WORK/g2.log"; return 1; }
	# a disk that is not the one packed is refused (its identity is saved)
	head -c 1048576 /dev/urandom > "$WORK/other.img"
	SMOLVM_DATA_DIR=$WORK/victim-data SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/g3.log" 30 \
		run --pristine --disk "data=$WORK/other.img:ro" "$b"
	grep -q "changed since the snapshot" "$WORK/g3.log" || { show "$WORK/g3.log"; return 1; }
	# bad grants
	SMOLVM_DATA_DIR=$WORK/victim-data run "$WORK/g4.log" 30 run --pristine --disk nope "$b"
	[ $? -eq 2 ] && grep -q -- '--disk "nope": expected NAME=PATH' "$WORK/g4.log" || { show "$WORK/g4.log"; return 1; }
	SMOLVM_DATA_DIR=$WORK/victim-data SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/g5.log" 30 \
		run --pristine --disk "data=$WORK/mine.img:ro" --disk "swap=$WORK/mine.img" "$b"
	grep -q -- "--disk swap: its machine has no disk of that name" "$WORK/g5.log" || { show "$WORK/g5.log"; return 1; }
	# inspect says what it asks for before anything runs
	SMOLVM_DATA_DIR=$WORK/victim-data "$SMOLVM" inspect "$b" > "$WORK/gi.log" 2>&1
	grep -q "^trust: not yours" "$WORK/gi.log" &&
		grep -q 'disk "data": its own, in the bundle (1.0 MiB, 1.0 MiB stored; --disk data=PATH gives another)' "$WORK/gi.log" &&
		grep -q "the host port of forward tcp:127.0.0.1:$port-:80 (--publish)" "$WORK/gi.log" &&
		grep -q "the host port of forward tcp:127.0.0.1:$(cat "$WORK/greedy.port3")-:82 (--publish)" "$WORK/gi.log" &&
		grep -q "the socket path $WORK/greedy.sock" "$WORK/gi.log" || { show "$WORK/gi.log" 40; return 1; }
	# --trust: the bundle's own resources, as its script says
	grun "$WORK/g6.log" "is_listening $port && [ -S $WORK/greedy.sock ]" --trust "$b" ||
		{ echo "--trust"; show "$WORK/g6.log"; return 1; }
}

# The host's loopback through NAT: a Linux guest packed by someone else
# fetches from an HTTP server on the host's 127.0.0.1 through slirp's
# gateway 10.0.2.2. As the victim's untrusted bundle it cannot (the
# default --net nat); with --net nat+host it can; --net none takes the
# outside away too. (net.test.sh: the guest, the servers. busybox wget's
# -T makes it crash in this guest: the refusal is immediate anyway.)
t_sec_net_host_loopback() {
	need_kvm || return
	net_linux_ready || return 1
	virtio_have virtio-net || { echo "SKIP: needs the virtio-net plugin"; return 77; }
	local b=$WORK/lo.smolmachine s hport rc how want
	read -r hport <<< "$(net_free_ports tcp)"
	# net_snapshot's bundle when it ran (packed with another data
	# directory: the victim's does not trust it); else one of our own
	if [ -f "$WORK/net.smolmachine" ]; then
		b=$WORK/net.smolmachine
	else
		s=$(net_linux_script lo-pack "")
		printf 'udhcpc -i eth0 -q -n -t 5 -T 2\necho "lo-$((1+1))-packed"\n' |
			SMOLVM_DATA_DIR=$WORK/attacker-data SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 300 \
			"$SMOLVM" pack "$s" --ready "lo-2-packed" -o "$b" > "$WORK/lo-pack.log" 2>&1 ||
			{ show "$WORK/lo-pack.log" 30; return 1; }
	fi
	net_servers_start "$hport"
	printf 'wget -q -O - http://10.0.2.2:%s/hello.txt || echo "wget-failed"\necho "lo-$((2+1))-done"\npoweroff -f\n' \
		"$hport" > "$WORK/lo-run.sh"
	for how in default nat+host none; do
		local args=()
		[ $how = default ] || args=(--net "$how")
		SMOLVM_DATA_DIR=$WORK/victim-data SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 120 \
			"$SMOLVM" run --pristine "${args[@]}" "$b" < "$WORK/lo-run.sh" > "$WORK/lo-$how.log" 2>&1
		rc=$?
		want=wget-failed
		[ $how = nat+host ] && want=$NET_TOKEN
		if ! grep -q '^lo-3-done' "$WORK/lo-$how.log" || ! grep -q "^$want" "$WORK/lo-$how.log" ||
		   { [ $how != nat+host ] && grep -q "^$NET_TOKEN" "$WORK/lo-$how.log"; }; then
			echo "--net $how: exit $rc, expected $want"; show "$WORK/lo-$how.log" 20
			net_servers_stop
			return 1
		fi
		echo "--net $how: $(grep -m1 "^$want" "$WORK/lo-$how.log")"
	done
	net_servers_stop
}
