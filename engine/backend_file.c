/* backend_file.c - segments in regular files. */
#include <fcntl.h>
#include <sys/stat.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "internal.h"

static int file_check_name(const char *name)
{
    if (strlen(name) >= PATH_MAX)
        return fail(EINVAL, "segment %.64s...: the path is longer than %d bytes", name, PATH_MAX - 1);
    return 0;
}

/* Only regular files are segments. O_NONBLOCK so that a FIFO named by
   mistake does not block the open (a read-only open of a FIFO waits for a
   writer, forever); anything that is not a regular file (a FIFO, a
   directory, a socket, a device) is refused with EINVAL (backend_open_error
   says why). */
static int file_open(const char *name, int oflag, mode_t mode)
{
    int fd = open(name, oflag | O_CLOEXEC | O_NONBLOCK, mode);
    if (fd < 0) {
        /* a read-write open of a directory (EISDIR), or an open of a
           socket or of a device without a driver (ENXIO): EINVAL, as a
           FIFO or a device that opens is */
        int e = errno;
        struct stat st;
        if (e == EISDIR || (e == ENXIO && stat(name, &st) == 0 && !S_ISREG(st.st_mode)))
            e = EINVAL;
        errno = e;
        return -1;
    }
    return backend_regular_only(fd, oflag);
}

int backend_regular_only(int fd, int oflag)
{
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    /* F_SETFL sets only the status flags (it ignores the access mode and
       O_CREAT/O_EXCL), and this open set none but O_NONBLOCK: so oflag
       itself clears it, without an F_GETFL first (one system call less
       on every open) */
    (void)fcntl(fd, F_SETFL, oflag & ~O_NONBLOCK);
    return fd;
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

bool backend_dangling_link(unsigned flags, const char *name)
{
    struct stat st;
    int e = errno;
    bool dangling = !(flags & MSEG_SHM) && lstat(name, &st) == 0 && S_ISLNK(st.st_mode) &&
                    stat(name, &st) != 0 && errno == ENOENT;
    errno = e;
    return dangling;
}

const char *backend_open_error(unsigned flags, const char *name, int e)
{
    struct stat st;
    if (e == EEXIST && backend_dangling_link(flags, name))
        return "a symbolic link to a missing file (no segment is made through a link)";
    /* a shm name passed shm_check_name: EINVAL is backend_regular_only's
       (or shm_open's for a directory) */
    if (e == EINVAL && (flags & MSEG_SHM))
        return "not a regular file";
    if (e == EINVAL && !(flags & MSEG_SHM) && stat(name, &st) == 0 && !S_ISREG(st.st_mode))
        return S_ISDIR(st.st_mode) ? "a directory, not a regular file" : "not a regular file";
    return strerror(e);
}

const struct backend backend_file = {
    .kind = "file",
    .check_name = file_check_name,
    .open = file_open,
    .unlink = unlink,
    .sync_name = file_sync_name,
};
