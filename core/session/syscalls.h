/* The syscall filter: once a machine is set up, smolvm's threads (vCPUs,
 * devices, hooks, the memory fill) may make only the system calls a
 * running VMM needs (libseccomp, one filter for every thread, and a
 * narrower one on top for the vCPU threads). Gone with
 * it: starting programs (a fork keeps the filter), ptrace, mounts and
 * namespaces, kernel modules and keyrings, BPF, perf, setuid and friends,
 * raw and netlink sockets. A forbidden call stops smolvm with a message naming it.
 * SMOLVM_SECCOMP=off leaves it out (debugging). docs/security.md. */
#ifndef SMOLVM_SYSCALLS_H
#define SMOLVM_SYSCALLS_H

#include "lib/err.h"

/* Starts building the filter on a thread of its own (call early: the
 * machine's setup then hides its cost). */
void syscalls_prepare(void);
/* Installs it on every thread of the process (building it first if
 * syscalls_prepare was not called). */
int syscalls_restrict(struct err *e) WARN_UNUSED;
/* On a vCPU thread, after syscalls_restrict: narrows this thread further
 * (no files, sockets or threads opened or made; no executable mappings). */
int syscalls_restrict_vcpu(struct err *e) WARN_UNUSED;

#endif
