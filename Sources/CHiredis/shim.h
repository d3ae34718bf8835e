#ifndef FACTORYCTL_CHIREDIS_SHIM_H
#define FACTORYCTL_CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>
#include <sys/time.h>

/* hiredis' redisCommand is variadic; Swift calls redisCommandArgv instead.
   These helpers reach what Swift imports awkwardly (fixed char arrays, macros). */

static inline struct timeval factoryctl_timeval_ms(long ms) {
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

static inline const char *factoryctl_redis_errstr(const redisContext *c) {
    return c->errstr;
}

static inline int factoryctl_redis_err(const redisContext *c) {
    return c->err;
}

#endif
