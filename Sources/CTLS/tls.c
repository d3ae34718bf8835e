#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include "ctls.h"

/* ---- OpenSSL through a lazily loaded libssl (see ctls.h) ---- */

#define CTLS_FIELD(type, name, parameters, arguments) type (*name) parameters;
#define CTLS_FIELD_VOID(name, parameters, arguments) void (*name) parameters;
static struct {
    CTLS_FUNCTIONS(CTLS_FIELD)
    CTLS_VOID_FUNCTIONS(CTLS_FIELD_VOID)
} api;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[256];
static int loaded;

static void load_openssl(void) {
    /* libssl pulls in libcrypto; dlsym on its handle finds both libraries' functions. */
    void *handle = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(load_error, sizeof load_error, "OpenSSL is not available (%s); install libssl3", dlerror());
        return;
    }
#define CTLS_LOAD(name) *(void **)(&api.name) = dlsym(handle, #name); \
    if (!api.name) { snprintf(load_error, sizeof load_error, "libssl.so.3 has no %s", #name); return; }
#define CTLS_LOAD_TYPED(type, name, parameters, arguments) CTLS_LOAD(name)
#define CTLS_LOAD_VOID(name, parameters, arguments) CTLS_LOAD(name)
    CTLS_FUNCTIONS(CTLS_LOAD_TYPED)
    CTLS_VOID_FUNCTIONS(CTLS_LOAD_VOID)
#undef CTLS_LOAD
#undef CTLS_LOAD_TYPED
#undef CTLS_LOAD_VOID
    loaded = 1; /* the handle stays open for the life of the process */
}

const char *ctls_load(void) {
    pthread_once(&load_once, load_openssl);
    return loaded ? NULL : load_error;
}

#define CTLS_DEFINE(type, name, parameters, arguments) type ctls_##name parameters { return api.name arguments; }
#define CTLS_DEFINE_VOID(name, parameters, arguments) void ctls_##name parameters { api.name arguments; }
CTLS_FUNCTIONS(CTLS_DEFINE)
CTLS_VOID_FUNCTIONS(CTLS_DEFINE_VOID)

int ctls_set_sni(SSL *ssl, const char *name) {
    return (int)api.SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, (void *)name);
}

int ctls_ctx_set_min_tls12(SSL_CTX *ctx) {
    return (int)api.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
}

void ctls_ctx_set_relay_modes(SSL_CTX *ctx) {
    api.SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, NULL);
}
