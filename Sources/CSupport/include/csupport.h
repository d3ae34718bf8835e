#ifndef FACTORYCTL_CSUPPORT_H
#define FACTORYCTL_CSUPPORT_H

#include <spawn.h>

/* glibc's posix_spawn_file_actions_addchdir_np is only declared under _GNU_SOURCE. */
int factoryctl_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);

/* Returns freed heap memory to the kernel (glibc's malloc_trim, not in Swift's Glibc module). */
int factoryctl_malloc_trim(void);

/* Asks the kernel to SIGKILL this process when its parent dies (prctl is variadic); returns
   -1 when the parent is already gone (re-parented to `expected_parent` no longer). */
int factoryctl_die_with_parent(int expected_parent);

/* The git commit this binary was built from (-DFACTORYCTL_COMMIT="..."), or "". */
const char *factoryctl_build_commit(void);

#endif
