#define _GNU_SOURCE
#include <spawn.h>
#include <malloc.h>
#include "csupport.h"

int factoryctl_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int factoryctl_malloc_trim(void) {
    return malloc_trim(0);
}
