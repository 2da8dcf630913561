# The guest agent (scripts/guest/agent), run on this host: it listens on a
# Unix socket instead of vsock and SYNC changes nothing (--dry-sync), and
# tests/integration/agentclient.py speaks the protocol to it. Fast, no KVM.
# Sourced by run.sh.

t_agent_host() {
	local agent=${AGENT:-build/guest/smolvm-agent} dir=$WORK/agent
	if [ ! -x "$agent" ]; then
		echo "missing $agent: run 'make agent'"
		return 1
	fi
	command -v python3 > /dev/null || { echo "SKIP: no python3"; return 77; }
	mkdir -p "$dir"
	timeout -k 5 180 python3 tests/integration/agentclient.py "$agent" "$dir"
}
