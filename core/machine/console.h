/* The VM console on the user's terminal (raw mode, Ctrl-A x to quit) or on
 * plain stdin/stdout (end of input becomes ^D, the tty's end-of-file). */
#ifndef SMOLVM_CONSOLE_H
#define SMOLVM_CONSOLE_H

#include <pthread.h>
#include <stddef.h>
#include <termios.h>
#include <smolvm/plugin.h>

#include "machine/loop.h"

#define CONSOLE_ESCAPE 0x01 /* Ctrl-A */

struct console {
	struct loop *loop;
	int in_fd, out_fd;
	int is_tty, raw;
	struct termios saved;
	int in_open;     /* still reading input */
	int eof_ctrl_d;  /* end of (non-tty) input reaches the guest as ^D */
	int eof_timer;   /* repeats that ^D (see console.c) */
	int escape;      /* Ctrl-A seen */
	int quit;        /* user asked to quit */
	unsigned char pending[4096];
	size_t pending_len;
	smolvm_console_rx rx;
	void *rx_opaque;
	void (*on_quit)(void *opaque);
	void *quit_opaque;
	/* The current line of guest output after each write (without the
	 * newline): complete lines once, and the partial one as it grows. */
	void (*on_line)(void *opaque, const char *line, int complete);
	void *line_opaque;
	pthread_mutex_t line_lock;
	char line[512];
	size_t line_len;
};

/* in_fd < 0: no input at all. */
int console_init(struct console *c, struct loop *l, int in_fd, int out_fd,
		 struct err *e) WARN_UNUSED;
void console_close(struct console *c);
int console_attach(struct console *c, smolvm_console_rx rx, void *opaque);
void console_write(struct console *c, const void *buf, size_t len);
/* On the loop thread: offer pending input to the device again. */
void console_deliver(struct console *c);

/* Pure input filter for the escape key, exposed for tests: copies bytes
 * from `in` to `out` (n + 1 bytes: a Ctrl-A held over from the previous
 * call may come out first), returns bytes written and sets
 * c->quit when Ctrl-A x was typed. */
size_t console_filter(struct console *c, const unsigned char *in, size_t n,
		      unsigned char *out);

#endif
