-- A Python web service, snapshotted warm: Debian's python3 with a small
-- catalogue loaded at start. The restored machine answers at once; a cold
-- boot would start the interpreter and load the data first.
--
--   smolvm pack scripts/examples/pyweb.lua -o pyweb.smolmachine
--   smolvm exec pyweb.smolmachine -- /run/smolvm/busybox wget -qO- http://127.0.0.1:8000/count
--
-- (/run/smolvm/busybox is smolvm's guest kit, there in every root
-- filesystem; this one has no wget or curl of its own.)
machine {
  name = "pyweb",
  memory = "512M",
  rootfs = {
    debian = "bookworm",
    packages = { "python3" },
    copy = { ["pyweb/app.py"] = "/srv/app.py", ["pyweb/items.csv"] = "/srv/items.csv" },
    -- byte-compiled once here, on the host, not at every start in the guest
    run = { "python3 -m compileall -q /srv" },
  },
  -- the service in the background, its output on the console
  start = { "cd /srv && python3 -m app &" },
  -- ready once it answers a request: that first request does what the
  -- service does lazily (about 8 s of guest time here), before the snapshot,
  -- so every restored machine answers at once ({ port = 8000 } would save it
  -- as soon as the port listens)
  ready = { exec = "/run/smolvm/busybox wget -qO- http://127.0.0.1:8000/count" },
  devices = {
    { type = "uart" },
    { type = "virtio-vsock" },
  },
}
