/* COM1 output and a small printf (%c %s %d %u %x %p, 'l' modifier); COM1 input. */
#include "guest.h"

#define COM1 0x3f8
#define LSR_DR   0x01
#define LSR_THRE 0x20

/* One lock for all output so lines from different CPUs do not interleave. */
static volatile uint32_t print_lock;

void spin_lock(volatile uint32_t *l)
{
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		while (*l)
			;
}

void spin_unlock(volatile uint32_t *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

static void putc_serial(char c)
{
	while (!(inb(COM1 + 5) & LSR_THRE))
		;
	outb(COM1, (uint8_t)c);
}

/* Input is enabled first: smolvm's uart takes input only while the guest
 * listens (IER receive interrupt, MCR OUT2); the interrupt line itself stays
 * masked (PIC, IOAPIC). */
char serial_getc(void)
{
	outb(COM1 + 1, 0x01); /* IER: received data available */
	outb(COM1 + 4, 0x0b); /* MCR: DTR, RTS, OUT2 */
	while (!(inb(COM1 + 5) & LSR_DR))
		;
	return (char)inb(COM1);
}

static void put_num(unsigned long v, unsigned base, bool neg)
{
	char buf[24];
	int i = 0;

	do {
		buf[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		putc_serial('-');
	while (i)
		putc_serial(buf[--i]);
}

static void vprint(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			putc_serial(*fmt);
			continue;
		}
		bool lng = false;
		if (*++fmt == 'l') {
			lng = true;
			fmt++;
		}
		switch (*fmt) {
		case 'c':
			putc_serial((char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			while (*s)
				putc_serial(*s++);
			break;
		}
		case 'd': {
			long v = lng ? va_arg(ap, long) : va_arg(ap, int);
			put_num(v < 0 ? -(unsigned long)v : (unsigned long)v, 10, v < 0);
			break;
		}
		case 'u':
			put_num(lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 10, false);
			break;
		case 'x':
			put_num(lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 16, false);
			break;
		case 'p':
			putc_serial('0');
			putc_serial('x');
			put_num((unsigned long)va_arg(ap, void *), 16, false);
			break;
		case '%':
			putc_serial('%');
			break;
		default: /* unknown or truncated format: stop */
			return;
		}
	}
}

void kprintf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	spin_lock(&print_lock);
	vprint(fmt, ap);
	spin_unlock(&print_lock);
	va_end(ap);
}

/* Prints "FAIL: ..." and ends the VM. Skips the lock: this CPU may hold it. */
NORETURN void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint("FAIL: ", ap);
	vprint(fmt, ap);
	va_end(ap);
	reset();
}
