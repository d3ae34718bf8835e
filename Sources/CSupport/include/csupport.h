#ifndef FACTORYCTL_CSUPPORT_H
#define FACTORYCTL_CSUPPORT_H

#include <spawn.h>

/* glibc's posix_spawn_file_actions_addchdir_np is only declared under _GNU_SOURCE. */
int factoryctl_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);

/* Returns freed heap memory to the kernel (glibc's malloc_trim, not in Swift's Glibc module). */
int factoryctl_malloc_trim(void);

#endif
