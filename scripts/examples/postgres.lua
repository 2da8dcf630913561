-- PostgreSQL 15 with a seeded table, snapshotted with the server up.
-- The database is made and seeded on the host while the image is built
-- (initdb and the first start in the guest would take minutes where its
-- kernel is emulated); the guest only starts the server.
--
--   smolvm pack scripts/examples/postgres.lua -o pg.smolmachine
--   smolvm exec pg.smolmachine -- su postgres -c "psql -tAc 'select count(*) from items'"
machine {
  name = "pg",
  cpus = 1,
  memory = "1G",
  rootfs = {
    debian = "bookworm",
    packages = { "postgresql-15" },
    copy = { ["postgres/seed.sql"] = "/seed.sql" },
    run = {
      "pg_ctlcluster 15 main start && su postgres -c 'psql -q -f /seed.sql' && pg_ctlcluster 15 main stop",
    },
  },
  start = {
    -- pg_ctlcluster gives the server the cluster's own environment, not
    -- ours: on hosts that need smolvm's GLIBC_TUNABLES (docs/rootfs.md)
    -- the server must get it there
    "[ -z \"$GLIBC_TUNABLES\" ] || echo \"GLIBC_TUNABLES = '$GLIBC_TUNABLES'\" >> /etc/postgresql/15/main/environment",
    -- pg_ctl waits 60 s for the server unless told (-t); where the guest
    -- kernel is emulated its start takes minutes
    "pg_ctlcluster 15 main start -- -t 1800",
  },
  ready = { exec = "pg_isready -q", timeout = 1800 },
  devices = {
    { type = "uart" },
    { type = "virtio-vsock" },
  },
}
