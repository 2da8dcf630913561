/* Errors: functions return 0 or -errno and fill a message the caller shows. */
#ifndef SMOLVM_ERR_H
#define SMOLVM_ERR_H

#include <stddef.h>

struct err {
	char msg[1024];
};

/* Formats the message into `e` (if not NULL) and returns `code`. */
int err_set(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prepends "prefix: " to the message already in `e`. */
int err_wrap(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define WARN_UNUSED __attribute__((warn_unused_result))

#endif
