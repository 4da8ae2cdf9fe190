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
 * Two more facts shape the remedy (both found by a review of its first
 * version): a child's copies of the parent's mappings also refer to the
 * parent's description, so closing the descriptor alone does not drop its
 * locks while a child lives (release, segment.c, now unlocks explicitly);
 * and a child registered only after fork() returns leaves a window in which
 * its parent can close, take itself for the last writer and mark the
 * segment clean under the child.
 *
 * So every open handle is listed here (registry_add at the end of a
 * successful mseg_open, registry_remove at the start of mseg_close), and
 * the registration for the child is made before the fork, in the parent:
 *   prepare  for each listed handle, a new description of the same file
 *            (reopened through /proc/self/fd, which finds it even if it was
 *            renamed or removed meanwhile) with the read lock of a separate
 *            opener (seg_register_fd);
 *   parent   closes its descriptor of each (without unlocking: the lock is
 *            the child's now);
 *   child    puts each at its handle's descriptor number (dup3), forgets a
 *            transaction or operation its thread had open (it belongs to
 *            the parent: the child's later calls in it fail with ECANCELED),
 *            and reseeds the handle's undo identity counter.
 * The child's part runs before fork() returns there and makes only
 * async-signal-safe calls, or plain system calls (fcntl, dup3, mmap, close,
 * getrandom).
 *
 * The child's copies of the parent's shared mappings are made again from
 * its own descriptor (seg_remap_after_fork), or they would keep the
 * parent's description, and its locks, alive after the parent exits or is
 * killed without closing. A copy-on-write handle's private view cannot be
 * remapped without losing its own pages: it keeps the parent's description
 * alive, which costs only a read lock on the readers' byte (others' shrinks
 * wait for the child). A copy-on-write handle forked inside its
 * transaction cannot lock again in the child (its private lock is held by
 * the parent's thread there): its calls that need the lock fail with
 * EDEADLK instead of waiting forever.
 *
 * When a handle's new description cannot be made (no /proc, no descriptor
 * to spare, permissions changed since the open), parent and child go on
 * sharing one description, and both handles are marked fork_shared: each
 * still works, but neither can tell whether the other is attached, so
 * mseg_close leaves the registration as it is (no "clean" mark, no unlock)
 * and mseg_shrink refuses (EBUSY), on both sides, for the rest of their
 * lives.
 *
 * Not covered: a fork() while another thread of the parent is inside an
 * mseg call (what that thread held stays held in the child, as with any
 * library; README says so), and a fork() from a signal handler that
 * interrupted mseg_open or mseg_close (the registry's mutex).
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

/* A new description of s's file, registered as a separate opener, for a
   child about to be forked: its descriptor, or -1. */
static int description_for_child(mseg *s)
{
    int fl = fcntl(s->fd, F_GETFL);
    if (fl < 0)
        return -1;
    char path[32];
    proc_fd_path(path, s->fd);
    int fd = open(path, (fl & O_ACCMODE) | O_CLOEXEC);
    if (fd >= 0 && seg_register_fd(s, fd)) {
        close(fd);
        return -1;
    }
    return fd;
}

static void before_fork(void)
{
    pthread_mutex_lock(&registry_lock);
    for (mseg *s = registry; s; s = s->reg_next)
        s->fork_fd = s->fork_shared ? -1 : description_for_child(s);
}

static void in_parent(void)
{
    for (mseg *s = registry; s; s = s->reg_next) {
        if (s->fork_fd >= 0)
            close(s->fork_fd);   /* no unlock: the child's descriptor holds it */
        else
            s->fork_shared = true;
        s->fork_fd = -1;
    }
    pthread_mutex_unlock(&registry_lock);
}

/* In the child: puts the description made for it at s's descriptor and
   maps s from it. False when s must go on as fork_shared (no description,
   or a step failed: the parent's locks may then outlive it). */
static bool take_own_description(mseg *s)
{
    if (s->fork_fd < 0)
        return false;
    int fdfl = fcntl(s->fd, F_GETFD);
    bool ok = fdfl >= 0 && dup3(s->fork_fd, s->fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) >= 0 &&
              seg_remap_after_fork(s) == 0;
    close(s->fork_fd);
    s->fork_fd = -1;
    return ok;
}

static void in_child(void)
{
    for (mseg *s = registry; s; s = s->reg_next) {
        if (!take_own_description(s))
            s->fork_shared = true;
        /* a transaction of any thread of the parent held a copy-on-write
           handle's private lock: in the child's copy it stays held */
        if (s->mode == MODE_COW && __atomic_load_n(&s->tx_holds_lock, __ATOMIC_RELAXED))
            s->fork_lost_lock = true;
        /* undo records are told apart by this counter (log.c): the child's
           must not repeat the parent's */
        uint64_t r;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
        s->op.seq ^= r;
    }
    tx_forget_after_fork();
    op_forget_after_fork();
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
