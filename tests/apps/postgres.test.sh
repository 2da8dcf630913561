# scripts/examples/postgres.lua end to end: Debian's postgresql-15 built
# into an image, its database seeded on the host, the server started in
# the guest, the machine packed once pg_isready answers, and the seeded
# table queried through smolvm exec. `make test-apps`. Sourced by
# tests/integration/run.sh.
. tests/integration/rootfs.sh

t_app_postgres() {
	need_kvm || return
	local b=$WORK/pg.smolmachine out
	# the server's start in the guest takes minutes where its kernel is emulated
	RPACK_TIMEOUT=2400 rpack "$WORK/pg.log" scripts/examples/postgres.lua "$b" -v ||
		{ show "$WORK/pg.log" 40; return 1; }
	grep -E "rootfs: built|ready after|saved" "$WORK/pg.log"
	out=$(rexec "$b" -- su postgres -c "psql -tAc 'select count(*), sum(price) from items'" 2>&1)
	[ "$out" = "1000|49995.00" ] || { echo "query: $out"; return 1; }
	# a write in one restore is not in the next: each starts from the bundle
	rexec "$b" -- su postgres -c "psql -qc 'delete from items'" || return 1
	out=$(rexec "$b" -- su postgres -c "psql -tAc 'select count(*) from items'" 2>&1)
	[ "$out" = 1000 ] || { echo "after a delete elsewhere: $out"; return 1; }
}
