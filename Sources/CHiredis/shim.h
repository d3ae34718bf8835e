#ifndef FACTORYCTL_CHIREDIS_SHIM_H
#define FACTORYCTL_CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>
#include <sys/time.h>

/* hiredis' redisCommand is variadic; Swift calls redisCommandArgv instead.
   These helpers cover the macros and struct reads Swift cannot reach. */
static inline struct timeval factoryctl_timeval_ms(long ms) {
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

#endif
