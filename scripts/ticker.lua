-- The ticker test guest: prints "tick N" about every 100 ms, on any host.
-- "guest:" names a file of the guest directory (`make guest` builds it).
machine {
  name = "ticker",
  cpus = 1,
  memory = "64M",
  kernel = "guest:ticker.elf",
  cmdline = "",
  ready = "tick 5",
  devices = {
    { type = "uart" },
  },
}
