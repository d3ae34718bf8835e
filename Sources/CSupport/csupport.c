#define _GNU_SOURCE
#include <spawn.h>
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include "csupport.h"

int factoryctl_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int factoryctl_malloc_trim(void) {
    return malloc_trim(0);
}

int factoryctl_die_with_parent(int expected_parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return -1;
    return getppid() == expected_parent ? 0 : -1;
}

#ifndef FACTORYCTL_COMMIT
#define FACTORYCTL_COMMIT ""
#endif

const char *factoryctl_build_commit(void) {
    return FACTORYCTL_COMMIT;
}
