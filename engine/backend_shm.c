/* backend_shm.c - segments in POSIX shared memory (tmpfs on Linux). */
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>

#include "backend.h"
#include "internal.h"

/* POSIX leaves names other than "/one-component" implementation-defined. */
static int shm_check_name(const char *name)
{
    size_t n = strlen(name);
    if (name[0] != '/' || n < 2 || strchr(name + 1, '/') || n > NAME_MAX)
        return fail(EINVAL, "shm name \"%s\" must be \"/name\": one slash, then 1..%d "
                    "characters without a slash", name, NAME_MAX - 1);
    return 0;
}

/* Only regular files, as backend_file.c: /dev/shm is writable by every
   user, and a FIFO put there under a segment's name made a read-only open
   (mseg_check's too) wait for a writer forever. */
static int shm_open_name(const char *name, int oflag, mode_t mode)
{
    int fd = shm_open(name, oflag | O_NONBLOCK, mode);   /* shm_open sets FD_CLOEXEC itself */
    return fd < 0 ? -1 : backend_regular_only(fd, oflag);
}

/* tmpfs does not survive a reboot: nothing to make durable. */
static int shm_sync_name(const char *name)
{
    (void)name;
    return 0;
}

const struct backend backend_shm = {
    .kind = "shm",
    .check_name = shm_check_name,
    .open = shm_open_name,
    .unlink = shm_unlink,
    .sync_name = shm_sync_name,
};
