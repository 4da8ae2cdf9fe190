/*
 * fsync_hook.h - seeing the engine's fsync calls from a test.
 *
 * test_powerloss.c defines fsync for the test binary: the statically linked
 * engine calls it in place of libc's, and it calls th_fsync_hook (when set)
 * just before the system call. Every test runs in a process of its own, so
 * a test may set the hook without affecting another.
 */
#ifndef MSEG_TEST_FSYNC_HOOK_H
#define MSEG_TEST_FSYNC_HOOK_H

extern void (*th_fsync_hook)(int fd);

/* When not 0, the next fsync fails with this errno (and it goes back to
   0); the hook may set it for the call it sees. */
extern int th_fsync_fail;

#endif
