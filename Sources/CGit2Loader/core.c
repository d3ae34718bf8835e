#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "git2_loader.h"

#define LIBGIT2 "libgit2.so.1.5"

/* The generated list of every libgit2 function the trampolines forward (loader.c). */
extern const char *const factoryctl_git2_functions[];

static void *handle;
static int load_status = -1;
static char load_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *opened = dlopen(LIBGIT2, RTLD_NOW | RTLD_LOCAL);
    if (!opened) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error,
                 "cannot load %s (%s); install libgit2-1.5 (Debian 12: apt-get install libgit2-1.5)",
                 LIBGIT2, why ? why : "unknown error");
        return;
    }
    for (const char *const *name = factoryctl_git2_functions; *name; name++) {
        if (!dlsym(opened, *name)) {
            snprintf(load_error, sizeof load_error, "%s has no %s; factoryctl needs libgit2 1.5", LIBGIT2, *name);
            dlclose(opened);
            return;
        }
    }
    __atomic_store_n(&handle, opened, __ATOMIC_RELEASE);
    load_status = 0;
}

int factoryctl_git2_load(const char **error) {
    pthread_once(&once, load);
    if (load_status != 0 && error) *error = load_error;
    return load_status;
}

void *factoryctl_git2_symbol(const char *name) {
    pthread_once(&once, load);
    void *symbol = handle ? dlsym(handle, name) : NULL;
    if (!symbol) {
        /* Unreachable through GitKit: every entry point calls factoryctl_git2_load first and
           throws when it fails, and a successful load has checked every forwarded symbol. */
        fprintf(stderr, "factoryctl: libgit2 used before it was loaded (%s)\n", name);
        abort();
    }
    return symbol;
}

int factoryctl_git2_loaded(void) {
    return __atomic_load_n(&handle, __ATOMIC_ACQUIRE) != NULL;
}
