/* The PC-like board every smolvm machine is: where RAM ends, the MMIO window
 * for system-bus devices, the interrupt lines devices may have, and what a
 * guest kernel is told on a host that emulates its kernel mode. */
#ifndef SMOLVM_X86_BOARD_H
#define SMOLVM_X86_BOARD_H

#include <stdint.h>

/* RAM stays below the 32-bit MMIO hole (IOAPIC, LAPIC, device windows). */
#define BOARD_RAM_MAX (3ull << 30)

/* System-bus device windows (virtio-mmio), up to the IOAPIC. */
#define BOARD_MMIO_BASE 0xd0000000ull
#define BOARD_MMIO_END 0xfec00000ull

/* Interrupt lines free for devices: not the PIT (0), keyboard (1),
 * cascade (2), serial ports (3, 4), RTC (8) or FPU (13). */
#define BOARD_FREE_GSIS { 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23 }

#define BOARD_MAX_CPUS 64

/* Keeps a Linux guest off the instructions a soft-emulated host cannot run
 * (PLATFORM.md) and tells its init (smolvm.quirks=1). rodata=off: there,
 * write-protecting the kernel's read-only data costs each boot ~5-7 s of
 * emulated page-table work (never passed on hardware KVM). */
#define BOARD_SOFT_EMULATION_CMDLINE                                           \
	"noxsave nopku clearcpuid=cx16,umip,smap,smep,rdrand,rdseed,fsgsbase,"  \
	"popcnt,movbe,abm,bmi1,bmi2,avx,avx2 rodata=off smolvm.quirks=1"

#endif
