#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <curl/curl.h>
#include "ccurl.h"

/* ---- HTTP POST through a lazily loaded libcurl (see ccurl.h) ---- */

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
