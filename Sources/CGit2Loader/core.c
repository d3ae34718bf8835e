#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "git2_loader.h"

#define LIBGIT2 "libgit2.so.1.5"

static void *handle;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    handle = dlopen(LIBGIT2, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        fprintf(stderr, "factoryctl: cannot load %s (%s); install libgit2-1.5 (Debian 12: apt-get install libgit2-1.5)\n",
                LIBGIT2, dlerror());
        exit(1);
    }
}

void *factoryctl_git2_symbol(const char *name) {
    pthread_once(&once, load);
    void *symbol = dlsym(handle, name);
    if (!symbol) {
        fprintf(stderr, "factoryctl: %s has no %s; factoryctl needs libgit2 1.5\n", LIBGIT2, name);
        exit(1);
    }
    return symbol;
}

int factoryctl_git2_loaded(void) {
    return __atomic_load_n(&handle, __ATOMIC_ACQUIRE) != NULL;
}
