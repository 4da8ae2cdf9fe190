/* error.c - errno plus a thread-local message with context, set in one place. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static __thread char errmsg[512];   /* not hot: the default TLS model */

static void vset(int err, const char *fmt, va_list ap)
{
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    errno = err;
}

int fail(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, fmt, ap);
    va_end(ap);
    return -1;
}

void *fail_null(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, fmt, ap);
    va_end(ap);
    return NULL;
}

/* Copies src into errmsg from *at, as much as fits (one byte is kept for the
   terminator). */
static void put(size_t *at, const char *src)
{
    size_t room = sizeof errmsg - 1 - *at, n = strnlen(src, room);
    memcpy(errmsg + *at, src, n);
    *at += n;
}

/* off in hexadecimal with a "0x", as printf's %#llx writes it (0 as "0"). */
static void put_hex(size_t *at, uint64_t off)
{
    char buf[19], *p = buf + sizeof buf;
    *--p = '\0';
    do
        *--p = "0123456789abcdef"[off & 15];
    while (off >>= 4);
    if (p[0] != '0') {
        *--p = 'x';
        *--p = '0';
    }
    put(at, p);
}

int fail_in_at(int err, const char *name, const char *what, uint64_t off, const char *after)
{
    size_t at = 0;
    put(&at, "segment ");
    put(&at, name);
    put(&at, ": ");
    put(&at, what);
    put_hex(&at, off);
    put(&at, after);
    errmsg[at] = '\0';
    errno = err;
    return -1;
}

void fail_note(const char *note)
{
    int e = errno;
    size_t n = strlen(errmsg);
    if (n < sizeof errmsg - 1)
        snprintf(errmsg + n, sizeof errmsg - n, "%s", note);
    errno = e;
}

int fail_no_room(const char *fmt, ...)
{
    if (errno != ENOMEM)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vset(ENOMEM, fmt, ap);
    va_end(ap);
    return -1;
}

const char *mseg_errmsg(void)
{
    return errmsg[0] ? errmsg : "no error";
}

const char *mseg_version(void)
{
    return "0.1.0";
}

unsigned mseg_format_version(void)
{
    return MSEG_FORMAT_VERSION;
}
