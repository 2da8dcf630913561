#include "machine/console.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

size_t console_filter(struct console *c, const unsigned char *in, size_t n,
		      unsigned char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n && !c->quit; i++) {
		unsigned char ch = in[i];
		if (!c->escape && c->is_tty && ch == CONSOLE_ESCAPE) {
			c->escape = 1;
			continue;
		}
		if (c->escape) {
			c->escape = 0;
			if (ch == 'x' || ch == 'X') {
				c->quit = 1;
				break;
			}
			if (ch != CONSOLE_ESCAPE)
				out[o++] = CONSOLE_ESCAPE;
		}
		out[o++] = ch;
	}
	return o;
}

static void update_watch(struct console *c)
{
	/* Stop reading while the device has not taken what we hold. */
	if (c->in_open)
		loop_set_events(c->loop, c->in_fd, c->pending_len ? 0 : POLLIN);
}

void console_deliver(struct console *c)
{
	if (c->pending_len && c->rx) {
		size_t took = c->rx(c->rx_opaque, c->pending, c->pending_len);
		if (took > c->pending_len)
			took = c->pending_len;
		memmove(c->pending, c->pending + took, c->pending_len - took);
		c->pending_len -= took;
	}
	update_watch(c);
}

/* A ^D means end-of-file only to a reader of a canonical tty; one that
 * lands while the guest's shell has its line editor on (or before the
 * shell runs) is lost. So at end of input the console sends ^D now and
 * again every second, whenever the last one has been taken, until the
 * machine stops: stdin stays at end-of-file, as it would on the host. */
static void send_eof(struct console *c)
{
	if (!c->pending_len) {
		c->pending[c->pending_len++] = 0x04;
		console_deliver(c);
	}
}

static void on_eof_timer(void *opaque, int fd, uint32_t revents)
{
	uint64_t n;

	(void)revents;
	if (read(fd, &n, sizeof(n)) == sizeof(n))
		send_eof(opaque);
}

static void start_eof_timer(struct console *c)
{
	struct itimerspec every = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };

	send_eof(c);
	c->eof_timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (c->eof_timer < 0)
		return;
	if (timerfd_settime(c->eof_timer, 0, &every, NULL) < 0 ||
	    loop_watch(c->loop, c->eof_timer, POLLIN, on_eof_timer, c)) {
		close(c->eof_timer);
		c->eof_timer = -1;
	}
}

static void on_input(void *opaque, int fd, uint32_t revents)
{
	struct console *c = opaque;
	unsigned char buf[sizeof(c->pending) / 2];
	/* A filtered byte may come out as two (a held-over Ctrl-A), and a
	 * hook may have typed into pending too. */
	size_t room = (sizeof(c->pending) - c->pending_len - 1) / 2;
	ssize_t n;

	(void)revents;
	if (!room) {
		update_watch(c);
		return;
	}
	n = read(fd, buf, room < sizeof(buf) ? room : sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* End of input: a ^D tells the guest's tty the same. */
		loop_unwatch(c->loop, fd);
		c->in_open = 0;
		if (!c->is_tty && c->eof_ctrl_d)
			start_eof_timer(c);
		return;
	}
	c->pending_len += console_filter(c, buf, (size_t)n, c->pending + c->pending_len);
	if (c->quit && c->on_quit)
		c->on_quit(c->quit_opaque);
	console_deliver(c);
}

int console_init(struct console *c, struct loop *l, int in_fd, int out_fd,
		 struct err *e)
{
	memset(c, 0, sizeof(*c));
	c->eof_timer = -1;
	pthread_mutex_init(&c->line_lock, NULL);
	c->loop = l;
	c->in_fd = in_fd;
	c->out_fd = out_fd;
	if (in_fd < 0)
		return 0;
	c->is_tty = isatty(in_fd);
	if (c->is_tty && tcgetattr(in_fd, &c->saved) == 0) {
		struct termios raw = c->saved;
		cfmakeraw(&raw);
		raw.c_oflag |= OPOST | ONLCR; /* our own messages stay readable */
		if (tcsetattr(in_fd, TCSANOW, &raw) == 0)
			c->raw = 1;
	}
	if (loop_watch(l, in_fd, POLLIN, on_input, c)) {
		console_close(c);
		return err_set(e, -ENOMEM, "console: cannot watch input");
	}
	c->in_open = 1;
	return 0;
}

void console_close(struct console *c)
{
	if (!c->loop)
		return; /* never opened: vm_create failed before console_init */
	if (c->raw) {
		tcsetattr(c->in_fd, TCSANOW, &c->saved);
		c->raw = 0;
	}
	if (c->in_open) {
		loop_unwatch(c->loop, c->in_fd);
		c->in_open = 0;
	}
	if (c->eof_timer >= 0) {
		loop_unwatch(c->loop, c->eof_timer);
		close(c->eof_timer);
		c->eof_timer = -1;
	}
}

int console_attach(struct console *c, smolvm_console_rx rx, void *opaque)
{
	if (c->rx)
		return -EBUSY;
	c->rx = rx;
	c->rx_opaque = opaque;
	return 0;
}

/* Guest output for whoever watches it (pack's ready text): the line so
 * far after every write, so a prompt that ends without a newline counts.
 * A longer line is cut: the watcher sees its first part. */
static void feed_lines(struct console *c, const char *p, size_t len)
{
	pthread_mutex_lock(&c->line_lock);
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n' || c->line_len == sizeof(c->line) - 1) {
			c->line[c->line_len] = 0;
			c->on_line(c->line_opaque, c->line, 1);
			c->line_len = 0;
			if (p[i] == '\n')
				continue;
		}
		if (p[i] != '\r')
			c->line[c->line_len++] = p[i];
	}
	if (c->line_len) {
		c->line[c->line_len] = 0;
		c->on_line(c->line_opaque, c->line, 0);
	}
	pthread_mutex_unlock(&c->line_lock);
}

void console_write(struct console *c, const void *buf, size_t len)
{
	const char *p = buf;

	if (c->on_line)
		feed_lines(c, p, len);

	while (len) {
		ssize_t n = write(c->out_fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return; /* nobody reads the console any more */
		}
		p += n;
		len -= (size_t)n;
	}
}
