-- The default Linux guest: a minimal 6.1 kernel and a busybox initramfs,
-- both built by `make guest` into the guest directory (build/guest/ in the
-- tree, "guest:" in paths). Its console is ttyS0; its
-- initramfs runs smolvm-agent, so `smolvm exec` works on its bundles.
machine {
  name = "linux",
  cpus = 1,
  memory = "256M",
  kernel = "guest:vmlinux",
  -- uncompressed: inflating gzip in an emulated guest kernel costs ~30 s
  initrd = "guest:initramfs.cpio",
  -- reboot=k: the guest ends through the i8042 reset port (smolvm exits 0).
  cmdline = "console=ttyS0 reboot=k panic=-1 random.trust_bootloader=on",
  -- `smolvm pack` saves the machine when its shell prompt appears.
  ready = "root@smolvm:/# ",
  devices = {
    { type = "uart" },
    -- the guest agent's channel: smolvm exec, vm:exec(), RNG reseed and
    -- clock set after a restore (the socket is a private one per run)
    { type = "virtio-vsock" },
  },
}
