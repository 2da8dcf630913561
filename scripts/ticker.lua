-- The ticker test guest: prints "tick N" about every 100 ms, on any host.
-- Paths are relative to this script. Build the guest with `make guest`.
machine {
  name = "ticker",
  cpus = 1,
  memory = "64M",
  kernel = "../build/guest/ticker.elf",
  cmdline = "",
  ready = "tick 5",
  devices = {
    { type = "uart" },
  },
}
