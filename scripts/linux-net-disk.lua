-- The default Linux guest with a disk and a network.
--   make guest        builds build/guest/disk.img (64 MiB, ext4)
--   build/smolvm boot scripts/linux-net-disk.lua
-- In the guest:  mount /dev/vda /mnt;  udhcpc -i eth0;  wget -O- http://10.0.2.2:8000/
-- (10.0.2.2 is the host's loopback). The host reaches the guest's port 80
-- at 127.0.0.1:8080. The disk image is never written: the guest's writes go
-- to disk.cow; delete it to start afresh.
machine {
  name = "linux-net-disk",
  cpus = 1,
  memory = "256M",
  kernel = "../build/guest/vmlinux",
  initrd = "../build/guest/initramfs.cpio",
  cmdline = "console=ttyS0 reboot=k panic=-1 random.trust_bootloader=on",
  ready = "root@smolvm:/# ",
  devices = {
    { type = "uart" },
    { type = "virtio-blk", path = "../build/guest/disk.img", overlay = "../build/guest/disk.cow" },
    { type = "virtio-net", forward = { "tcp:127.0.0.1:8080-:80" } },
    { type = "virtio-rng" },
  },
}
