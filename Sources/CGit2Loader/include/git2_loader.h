#ifndef FACTORYCTL_GIT2_LOADER_H
#define FACTORYCTL_GIT2_LOADER_H

/* libgit2 is loaded on first use (dlopen of libgit2.so.1.5), not at start-up: see
   scripts/gen-git2-loader.py. Returns the address of `name` in libgit2; exits the process with
   a message naming the missing library when it cannot be loaded. */
void *factoryctl_git2_symbol(const char *name);

/* 1 once libgit2 has been loaded into this process. */
int factoryctl_git2_loaded(void);

#endif
