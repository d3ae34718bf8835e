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
#include <curl/curl.h>
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
    pthread_mutex_lock(&ca_lock);
    int ran = 0, failed = 0;
    if (!ca_loaded) {
        ca_loaded = 1;
        parse_file_fn real = real_parse_file();
        for (int i = 0; i < ca_deferred_count; i++) {
            /* A positive result counts certificates that did not parse; the rest are loaded. */
            if (!real || real(ca_deferred_chain[i], ca_deferred_path[i]) < 0) failed = 1;
            free(ca_deferred_path[i]);
            ran++;
        }
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

/* ---- HTTP POST through a lazily loaded libcurl (see csupport.h) ---- */

static struct {
    void *handle;
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_perform)(CURL *);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} curl_api;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static char curl_load_error[256];

static void load_curl(void) {
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(curl_load_error, sizeof curl_load_error, "libcurl is not available (%s); install libcurl4", dlerror());
        return;
    }
#define LOAD(field, name) *(void **)(&curl_api.field) = dlsym(h, name); if (!curl_api.field) { \
        snprintf(curl_load_error, sizeof curl_load_error, "libcurl has no %s", name); return; }
    LOAD(global_init, "curl_global_init")
    LOAD(easy_init, "curl_easy_init")
    LOAD(easy_setopt, "curl_easy_setopt")
    LOAD(easy_perform, "curl_easy_perform")
    LOAD(easy_getinfo, "curl_easy_getinfo")
    LOAD(easy_cleanup, "curl_easy_cleanup")
    LOAD(easy_strerror, "curl_easy_strerror")
    LOAD(slist_append, "curl_slist_append")
    LOAD(slist_free_all, "curl_slist_free_all")
#undef LOAD
    if (curl_api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(curl_load_error, sizeof curl_load_error, "curl_global_init failed");
        return;
    }
    curl_api.handle = h;
}

static size_t discard_body(char *data, size_t size, size_t count, void *context) {
    (void)data; (void)context;
    return size * count;
}

/* One request with libcurl (loaded on first use): http and https only, no redirects, the body
 * discarded. `configure` adds the method-specific options. */
static int http_request(const char *url, long timeout_ms, struct curl_slist *headers,
                        void (*configure)(CURL *, const void *), const void *context,
                        long *status, char *error, int error_length) {
    pthread_once(&curl_once, load_curl);
    if (!curl_api.handle) {
        snprintf(error, (size_t)error_length, "%s", curl_load_error);
        return -1;
    }
    CURL *curl = curl_api.easy_init();
    if (!curl) {
        snprintf(error, (size_t)error_length, "curl_easy_init failed");
        return -1;
    }
    char curl_error[CURL_ERROR_SIZE] = {0};
    curl_api.easy_setopt(curl, CURLOPT_URL, url);
    curl_api.easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_api.easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_api.easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    if (headers) curl_api.easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_api.easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_api.easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_api.easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
    curl_api.easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
    configure(curl, context);
    CURLcode code = curl_api.easy_perform(curl);
    int result = 0;
    if (code == CURLE_OK) {
        long response = 0;
        curl_api.easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response);
        *status = response;
    } else {
        snprintf(error, (size_t)error_length, "%s", curl_error[0] ? curl_error : curl_api.easy_strerror(code));
        result = -1;
    }
    curl_api.easy_cleanup(curl);
    return result;
}

struct post_body { const char *body; long length; };

static void configure_post(CURL *curl, const void *context) {
    const struct post_body *post = context;
    curl_api.easy_setopt(curl, CURLOPT_POST, 1L);
    curl_api.easy_setopt(curl, CURLOPT_POSTFIELDS, post->body);
    curl_api.easy_setopt(curl, CURLOPT_POSTFIELDSIZE, post->length);
}

static void configure_get(CURL *curl, const void *context) {
    (void)context;
    curl_api.easy_setopt(curl, CURLOPT_HTTPGET, 1L);
}

int factoryctl_http_post(const char *url, const char *const *headers, int header_count,
                         const char *body, long body_length, long timeout_ms,
                         long *status, char *error, int error_length) {
    pthread_once(&curl_once, load_curl);
    struct curl_slist *list = NULL;
    if (curl_api.handle) {
        for (int i = 0; i < header_count; i++) list = curl_api.slist_append(list, headers[i]);
    }
    struct post_body post = { body, body_length };
    int result = http_request(url, timeout_ms, list, configure_post, &post, status, error, error_length);
    if (list) curl_api.slist_free_all(list);
    return result;
}

int factoryctl_http_get(const char *url, long timeout_ms, long *status, char *error, int error_length) {
    return http_request(url, timeout_ms, NULL, configure_get, NULL, status, error, error_length);
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
