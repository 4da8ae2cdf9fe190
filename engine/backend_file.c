/* backend_file.c - segments in regular files. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "internal.h"

static int file_check_name(const char *name)
{
    if (strlen(name) >= PATH_MAX)
        return fail(EINVAL, "segment path is longer than %d bytes", PATH_MAX - 1);
    return 0;
}

static int file_open(const char *name, int oflag, mode_t mode)
{
    return open(name, oflag | O_CLOEXEC, mode);
}

/* fsync of the directory holding name, so a crash cannot lose the new entry. */
static int file_sync_name(const char *name)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(name, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == name)
        strcpy(dir, "/");
    else {
        size_t n = (size_t)(slash - name);
        memcpy(dir, name, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

const struct backend backend_file = {
    .kind = "file",
    .check_name = file_check_name,
    .open = file_open,
    .unlink = unlink,
    .sync_name = file_sync_name,
};
