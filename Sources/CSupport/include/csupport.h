#ifndef FACTORYCTL_CSUPPORT_H
#define FACTORYCTL_CSUPPORT_H

#include <spawn.h>

/* glibc's posix_spawn_file_actions_addchdir_np is only declared under _GNU_SOURCE. */
int factoryctl_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);

#endif
