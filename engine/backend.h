/*
 * backend.h - where a segment's bytes live: a regular file or a POSIX shm
 * object. Both give a file descriptor that segment.c maps with mmap; this
 * seam is only about names: opening, removing, and making a new name
 * durable.
 */
#ifndef MSEG_BACKEND_H
#define MSEG_BACKEND_H

#include <stdbool.h>
#include <sys/types.h>

struct backend {
    const char *kind;                                   /* "file" or "shm" */
    /* 0 if name is acceptable, else -1 with EINVAL and a message */
    int (*check_name)(const char *name);
    /* like open(2): a descriptor (O_CLOEXEC) or -1 with errno */
    int (*open)(const char *name, int oflag, mode_t mode);
    /* like unlink(2) */
    int (*unlink)(const char *name);
    /* makes a newly created name durable (fsync of the parent directory) */
    int (*sync_name)(const char *name);
};

/* fd (opened with O_NONBLOCK | oflag) with O_NONBLOCK cleared, if it is a
   regular file; otherwise it is closed and -1 returned, with EINVAL. */
int backend_regular_only(int fd, int oflag);

/* Why be->open failed with errno e, for a message: strerror(e), or for a
   file that exists but is not a regular file (EINVAL), that. */
const char *backend_open_error(unsigned flags, const char *name, int e);

/* Whether name is a symbolic link to a missing file (never for a shm
   name: shm_open follows no link). Keeps errno. */
bool backend_dangling_link(unsigned flags, const char *name);

extern const struct backend backend_file;
extern const struct backend backend_shm;

#endif
