#define _GNU_SOURCE
#include <spawn.h>
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
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

/* ---- CA certificates on demand (see csupport.h) ---- */

typedef int (*parse_file_fn)(void *chain, const char *path);

#define MAX_DEFERRED 8
static pthread_mutex_t ca_lock = PTHREAD_MUTEX_INITIALIZER;
static int ca_loaded = 0;
static int ca_deferred_count = 0;
static void *ca_deferred_chain[MAX_DEFERRED];
static char *ca_deferred_path[MAX_DEFERRED];

static parse_file_fn real_parse_file(void) {
    static parse_file_fn real = NULL;
    if (!real) real = (parse_file_fn)dlsym(RTLD_NEXT, "mbedtls_x509_crt_parse_file");
    if (!real) {
        /* libgit2 is dlopen'ed with RTLD_LOCAL: its mbedTLS is not in the global scope that
           RTLD_NEXT searches. Ask the already loaded library itself. */
        void *x509 = dlopen("libmbedx509.so.1", RTLD_NOLOAD | RTLD_LAZY);
        if (x509) real = (parse_file_fn)dlsym(x509, "mbedtls_x509_crt_parse_file");
    }
    return real;
}

/* Interposes mbedTLS's function (the executable's definition wins over the shared library's). */
__attribute__((visibility("default")))
int mbedtls_x509_crt_parse_file(void *chain, const char *path) {
    pthread_mutex_lock(&ca_lock);
    if (!ca_loaded && ca_deferred_count < MAX_DEFERRED && path) {
        char *copy = strdup(path);
        if (copy) {
            ca_deferred_chain[ca_deferred_count] = chain;
            ca_deferred_path[ca_deferred_count] = copy;
            ca_deferred_count++;
            pthread_mutex_unlock(&ca_lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&ca_lock);
    parse_file_fn real = real_parse_file();
    return real ? real(chain, path) : -0x2900; /* MBEDTLS_ERR_X509_FILE_IO_ERROR */
}

int factoryctl_load_ca_certificates(void) {
    return factoryctl_load_ca_certificates_from(NULL);
}

int factoryctl_load_ca_certificates_from(const char *bundle) {
    if (bundle && !*bundle) bundle = NULL;
    pthread_mutex_lock(&ca_lock);
    int ran = 0, failed = 0;
    if (!ca_loaded) {
        ca_loaded = 1;
        parse_file_fn real = real_parse_file();
        for (int i = 0; i < ca_deferred_count; i++) {
            /* A positive result counts certificates that did not parse; the rest are loaded. */
            const char *path = bundle ? bundle : ca_deferred_path[i];
            if (!real || real(ca_deferred_chain[i], path) < 0) failed = 1;
            free(ca_deferred_path[i]);
            ran++;
        }
        /* A bundle named, and no load of libgit2's to put it in (no system bundle file, or a
           TLS library that is not mbedTLS): it could not be made the one trusted. */
        if (bundle && ca_deferred_count == 0) failed = 1;
        ca_deferred_count = 0;
    }
    pthread_mutex_unlock(&ca_lock);
    return failed ? -1 : ran;
}

int factoryctl_ca_loaded(void) {
    pthread_mutex_lock(&ca_lock);
    int loaded = ca_loaded;
    pthread_mutex_unlock(&ca_lock);
    return loaded;
}

int factoryctl_deferred_ca_loads(void) {
    pthread_mutex_lock(&ca_lock);
    int count = ca_deferred_count;
    pthread_mutex_unlock(&ca_lock);
    return count;
}

/* ---- Returning clean pages (see csupport.h) ---- */

long factoryctl_release_clean_pages(void) {
    FILE *smaps = fopen("/proc/self/smaps", "re");
    if (!smaps) return -1;
    char line[512];
    unsigned long start = 0, end = 0;
    int candidate = 0;
    long rss = 0, anonymous = 0, released = 0;
    int have_mapping = 0;
#define FINISH_MAPPING() do { \
        if (have_mapping && candidate && anonymous == 0 && rss > 0) { \
            if (madvise((void *)start, end - start, MADV_DONTNEED) == 0) released += rss; \
        } } while (0)
    while (fgets(line, sizeof line, smaps)) {
        unsigned long a, b;
        char perms[8] = {0};
        char path[256] = {0};
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &a, &b, perms, path) >= 3 && strchr(line, '-') == line + strspn(line, "0123456789abcdef")) {
            FINISH_MAPPING();
            have_mapping = 1;
            start = a; end = b;
            rss = anonymous = 0;
            /* File-backed, private, never writable: code and read-only data. */
            candidate = path[0] == '/' && perms[1] != 'w' && perms[3] == 'p';
            continue;
        }
        long value;
        if (sscanf(line, "Rss: %ld kB", &value) == 1) rss = value;
        else if (sscanf(line, "Anonymous: %ld kB", &value) == 1) anonymous = value;
    }
    FINISH_MAPPING();
#undef FINISH_MAPPING
    fclose(smaps);
    return released;
}
