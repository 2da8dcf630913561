#ifndef SMOLVM_I8042_H
#define SMOLVM_I8042_H

#include "machine/vm.h"

int i8042_add(struct vm *vm, struct err *e) WARN_UNUSED;

#endif
