#ifndef FACTORYCTL_CCURL_H
#define FACTORYCTL_CCURL_H

/* An HTTP(S) POST through libcurl, loaded with dlopen on first use so that processes that never
   POST do not map libcurl and its dependencies. headers are "Name: value" strings. Returns 0 and
   sets *status when a response arrived; -1 with a message in error (NUL-terminated) otherwise.
   No redirects are followed; only http and https are allowed. */
/* GET `url` (http or https, no redirects) with libcurl, loaded on first use; the body is
 * discarded. Returns 0 and sets *status, or -1 with a message in `error`. */
int factoryctl_http_get(const char *url, long timeout_ms, long *status, char *error, int error_length);

int factoryctl_http_post(const char *url, const char *const *headers, int header_count,
                         const char *body, long body_length, long timeout_ms,
                         long *status, char *error, int error_length);

#endif
