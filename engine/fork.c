/*
 * fork.c - a handle stays a handle of its own process across fork().
 *
 * A handle registers its process as attached with open file description
 * (OFD) locks on bytes of the segment (segment.c, "Attach protocol"). Those
 * locks belong to the open file description, and fork() gives the child a
 * copy of the parent's descriptors that refers to the same description. A
 * child that used an inherited handle therefore shared its parent's
 * registration. Measured before this file existed:
 *   - the child's mseg_close took the writers' byte exclusively (the one
 *     owner converting its own read lock), took itself for the last writer,
 *     marked the segment clean while the parent was still writing, and left
 *     the byte locked exclusively: every later read-write open, in any
 *     process, then waited until the parent closed;
 *   - the child's mseg_shrink saw no other handle and could cut the file
 *     under the parent's mapping.
 *
 * So every open handle is listed here (registry_add at the end of a
 * successful mseg_open, registry_remove at the start of mseg_close), and
 * in the child of a fork() each listed handle gets a description of its own
 * before fork() returns: the same file reopened through /proc/self/fd
 * (which finds it even if it was renamed or removed meanwhile), registered
 * again with a read lock as a separate opener (seg_register_fd), and put at
 * the handle's descriptor number with dup3. The handler runs in the child
 * before anything else and uses only async-signal-safe calls (open, fcntl,
 * dup3, close, getrandom), as POSIX asks of a child of a threaded process.
 *
 * A handle that cannot get a description of its own (no /proc, no
 * descriptor left) keeps working but is marked fork_shared: mseg_close then
 * leaves the shared registration alone and mseg_shrink refuses (EBUSY).
 *
 * Not covered: a fork() while another thread of the parent is inside an
 * mseg call. As with any library, that thread does not exist in the child,
 * and whatever it held (this handle's mapping mutex, a copy-on-write
 * handle's private writes half done) stays held there; README says so.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static mseg *registry;                 /* open handles, through reg_next */
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

/* "/proc/self/fd/<fd>" into buf (at least 32 bytes), without snprintf,
   which is not async-signal-safe. */
static void proc_fd_path(char *buf, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[12];
    unsigned n = 0, v = (unsigned)fd;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < sizeof digits);
    size_t i = 0;
    for (; prefix[i]; i++)
        buf[i] = prefix[i];
    while (n)
        buf[i++] = digits[--n];
    buf[i] = '\0';
}

/* Gives s, in a child just forked, a description of its own: 0, or -1 when
   it must keep sharing its parent's. */
static int own_description(mseg *s)
{
    int fl = fcntl(s->fd, F_GETFL);
    int fdfl = fcntl(s->fd, F_GETFD);
    if (fl < 0 || fdfl < 0)
        return -1;
    char path[32];
    proc_fd_path(path, s->fd);
    int fd = open(path, (fl & O_ACCMODE) | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (seg_register_fd(s, fd) || dup3(fd, s->fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
        close(fd);
        return -1;
    }
    close(fd);   /* s->fd refers to the new description now, with its lock */
    return 0;
}

static void before_fork(void)
{
    pthread_mutex_lock(&registry_lock);
}

static void in_parent(void)
{
    pthread_mutex_unlock(&registry_lock);
}

static void in_child(void)
{
    for (mseg *s = registry; s; s = s->reg_next) {
        if (!s->fork_shared && own_description(s))
            s->fork_shared = true;
        /* undo records are told apart by this counter (log.c): the child's
           must not repeat the parent's */
        uint64_t r;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
        s->op.seq ^= r;
    }
    pthread_mutex_unlock(&registry_lock);
}

static void install_handlers(void)
{
    pthread_atfork(before_fork, in_parent, in_child);
}

void registry_add(mseg *s)
{
    pthread_once(&handlers_once, install_handlers);
    pthread_mutex_lock(&registry_lock);
    s->reg_prev = NULL;
    s->reg_next = registry;
    if (registry)
        registry->reg_prev = s;
    registry = s;
    pthread_mutex_unlock(&registry_lock);
}

void registry_remove(mseg *s)
{
    pthread_mutex_lock(&registry_lock);
    if (s->reg_prev)
        s->reg_prev->reg_next = s->reg_next;
    else if (registry == s)
        registry = s->reg_next;
    if (s->reg_next)
        s->reg_next->reg_prev = s->reg_prev;
    s->reg_next = s->reg_prev = NULL;
    pthread_mutex_unlock(&registry_lock);
}
