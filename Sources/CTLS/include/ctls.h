#ifndef FACTORYCTL_CTLS_H
#define FACTORYCTL_CTLS_H

/* OpenSSL 3 (Debian 12's libssl3) for rediss://, loaded with dlopen on first use so that
   processes that never speak TLS do not map libssl and libcrypto (about 1 ms of start-up).
   OpenSSL's headers give the types and constants; its functions are called only through the
   ctls_ wrappers below, which call into the loaded library. RedisKit's TLSSession is their only
   caller, and it calls ctls_load() first: a wrapper called before a successful load crashes. */

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

/* Loads libssl.so.3 once (thread-safe). NULL when it is loaded, else why not. */
const char *ctls_load(void);

/* X(return type, name, parameters, arguments): the OpenSSL functions RedisKit uses. */
#define CTLS_FUNCTIONS(X) \
    X(const SSL_METHOD *, TLS_client_method, (void), ()) \
    X(SSL_CTX *, SSL_CTX_new, (const SSL_METHOD *method), (method)) \
    X(long, SSL_CTX_ctrl, (SSL_CTX *ctx, int cmd, long larg, void *parg), (ctx, cmd, larg, parg)) \
    X(int, SSL_CTX_load_verify_locations, (SSL_CTX *ctx, const char *file, const char *path), (ctx, file, path)) \
    X(int, SSL_CTX_set_default_verify_paths, (SSL_CTX *ctx), (ctx)) \
    X(int, SSL_CTX_use_certificate_chain_file, (SSL_CTX *ctx, const char *file), (ctx, file)) \
    X(int, SSL_CTX_use_PrivateKey_file, (SSL_CTX *ctx, const char *file, int type), (ctx, file, type)) \
    X(int, SSL_CTX_check_private_key, (const SSL_CTX *ctx), (ctx)) \
    X(SSL *, SSL_new, (SSL_CTX *ctx), (ctx)) \
    X(int, SSL_set_fd, (SSL *ssl, int fd), (ssl, fd)) \
    X(long, SSL_ctrl, (SSL *ssl, int cmd, long larg, void *parg), (ssl, cmd, larg, parg)) \
    X(X509_VERIFY_PARAM *, SSL_get0_param, (SSL *ssl), (ssl)) \
    X(int, X509_VERIFY_PARAM_set1_ip_asc, (X509_VERIFY_PARAM *param, const char *ipasc), (param, ipasc)) \
    X(int, SSL_set1_host, (SSL *ssl, const char *hostname), (ssl, hostname)) \
    X(int, SSL_connect, (SSL *ssl), (ssl)) \
    X(int, SSL_get_error, (const SSL *ssl, int ret), (ssl, ret)) \
    X(long, SSL_get_verify_result, (const SSL *ssl), (ssl)) \
    X(const char *, X509_verify_cert_error_string, (long n), (n)) \
    X(int, SSL_read, (SSL *ssl, void *buf, int num), (ssl, buf, num)) \
    X(int, SSL_write, (SSL *ssl, const void *buf, int num), (ssl, buf, num)) \
    X(int, SSL_shutdown, (SSL *ssl), (ssl)) \
    X(unsigned long, ERR_get_error, (void), ()) \
    X(unsigned long, ERR_peek_error, (void), ()) \
    X(const char *, ERR_reason_error_string, (unsigned long e), (e))

#define CTLS_VOID_FUNCTIONS(X) \
    X(SSL_CTX_free, (SSL_CTX *ctx), (ctx)) \
    X(SSL_CTX_set_verify, (SSL_CTX *ctx, int mode, SSL_verify_cb callback), (ctx, mode, callback)) \
    X(SSL_CTX_set_default_passwd_cb, (SSL_CTX *ctx, pem_password_cb *cb), (ctx, cb)) \
    X(SSL_free, (SSL *ssl), (ssl)) \
    X(ERR_clear_error, (void), ()) \
    X(ERR_error_string_n, (unsigned long e, char *buf, size_t len), (e, buf, len))

#define CTLS_DECLARE(type, name, parameters, arguments) type ctls_##name parameters;
#define CTLS_DECLARE_VOID(name, parameters, arguments) void ctls_##name parameters;
CTLS_FUNCTIONS(CTLS_DECLARE)
CTLS_VOID_FUNCTIONS(CTLS_DECLARE_VOID)
#undef CTLS_DECLARE
#undef CTLS_DECLARE_VOID

/* What Swift cannot call: OpenSSL's macros over SSL_ctrl / SSL_CTX_ctrl. */
int ctls_set_sni(SSL *ssl, const char *name);
int ctls_ctx_set_min_tls12(SSL_CTX *ctx);
/* A retried SSL_write may pass the same bytes from a moved buffer, and may write part of them. */
void ctls_ctx_set_relay_modes(SSL_CTX *ctx);

#endif
