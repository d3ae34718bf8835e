#ifndef FACTORYCTL_GIT2_LOADER_H
#define FACTORYCTL_GIT2_LOADER_H

/* libgit2 is loaded on first use (dlopen of libgit2.so.1.5), not at start-up: see
   scripts/gen-git2-loader.py. */

/* Loads libgit2 once and checks that every function factoryctl forwards is there. Returns 0,
   or -1 with *error set to a message naming what is missing (static storage). Never exits. */
int factoryctl_git2_load(const char **error);

/* The address of `name` in libgit2. Only valid after factoryctl_git2_load returned 0. */
void *factoryctl_git2_symbol(const char *name);

/* 1 once libgit2 has been loaded into this process. */
int factoryctl_git2_loaded(void);

/* Registers factoryctl's socket stream (socket_stream.c) as libgit2's standard stream: libgit2's
   own, plus TCP_NODELAY. Call once, after git_libgit2_init. Returns libgit2's result (0, or <0
   with git_error_last set). */
int factoryctl_git2_register_socket_stream(void);

#endif
