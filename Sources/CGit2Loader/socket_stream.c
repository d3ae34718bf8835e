/* libgit2's socket stream, with TCP_NODELAY: see git2_loader.h.
 *
 * libgit2 1.5's default socket stream (src/libgit2/streams/socket.c) connects with Nagle's
 * algorithm left on. An HTTPS fetch then stalls twice for the server's delayed ACK (~40 ms on
 * Linux): once in the TLS handshake, where mbedTLS writes its second flight as several small
 * records, and once when the HTTP request goes out as headers then body. git's libcurl sets
 * TCP_NODELAY on every connection; so does this stream. Every other behaviour is libgit2's:
 * the same address walk, blocking connect, send/recv, and the same error classes and messages.
 * libgit2's TLS stream (mbedtls.c) builds on whatever git_socket_stream_new returns, which is
 * the registered standard stream, so HTTPS, HTTP, git:// and SSH all get it. */
#include <git2.h>
#include <git2/sys/stream.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include "git2_loader.h"

/* The layout of libgit2 1.5's git_socket_stream (src/libgit2/streams/socket.h), on purpose:
   its SSH transport takes the standard stream to be one and hands `s` to libssh2. */
typedef struct {
    git_stream parent;
    char *host;
    char *port;
    int s;
} socket_stream;

static void set_error(int error_class, const char *format, ...) {
    char message[512];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    git_error_set_str(error_class, message);
}

static int socket_connect(git_stream *stream) {
    socket_stream *st = (socket_stream *)stream;
    struct addrinfo hints, *info = NULL, *p;
    int s = -1, connect_errno = 0;

    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;

    int ret = getaddrinfo(st->host, st->port, &hints, &info);
    if (ret != 0) {
        set_error(GIT_ERROR_NET, "failed to resolve address for %s: %s", st->host, gai_strerror(ret));
        return -1;
    }

    for (p = info; p != NULL; p = p->ai_next) {
        s = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
        if (s < 0) {
            connect_errno = errno;
            continue;
        }
        if (p->ai_family == AF_INET || p->ai_family == AF_INET6) {
            /* Best effort, as curl does: a socket without it still works, only slower. */
            int one = 1;
            (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (connect(s, p->ai_addr, (socklen_t)p->ai_addrlen) == 0)
            break;
        /* If we can't connect, try the next one. */
        connect_errno = errno;
        close(s);
        s = -1;
    }
    freeaddrinfo(info);

    if (s < 0) {
        /* libgit2 sets this one with GIT_ERROR_OS, which appends ": <strerror(errno)>". */
        set_error(GIT_ERROR_OS, "failed to connect to %s: %s", st->host, connect_errno ? strerror(connect_errno) : "");
        return -1;
    }
    st->s = s;
    return 0;
}

static ssize_t socket_write(git_stream *stream, const char *data, size_t len, int flags) {
    socket_stream *st = (socket_stream *)stream;
    errno = 0;
    ssize_t written = send(st->s, data, len, flags);
    if (written < 0) {
        set_error(GIT_ERROR_NET, "error sending data: %s", strerror(errno));
        return -1;
    }
    return written;
}

static ssize_t socket_read(git_stream *stream, void *data, size_t len) {
    socket_stream *st = (socket_stream *)stream;
    ssize_t ret = recv(st->s, data, len, 0);
    if (ret < 0)
        set_error(GIT_ERROR_NET, "error receiving socket data: %s", strerror(errno));
    return ret;
}

static int socket_close(git_stream *stream) {
    socket_stream *st = (socket_stream *)stream;
    int error = st->s < 0 ? 0 : close(st->s);
    st->s = -1;
    return error;
}

static void socket_free(git_stream *stream) {
    socket_stream *st = (socket_stream *)stream;
    free(st->host);
    free(st->port);
    free(st);
}

static int socket_stream_new(git_stream **out, const char *host, const char *port) {
    if (!out || !host || !port) {
        git_error_set_str(GIT_ERROR_INVALID, "invalid argument to the socket stream");
        return -1;
    }
    socket_stream *st = calloc(1, sizeof *st);
    if (st) {
        st->host = strdup(host);
        st->port = strdup(port);
    }
    if (!st || !st->host || !st->port) {
        if (st) socket_free(&st->parent);
        git_error_set_oom();
        return -1;
    }
    st->parent.version = GIT_STREAM_VERSION;
    st->parent.connect = socket_connect;
    st->parent.write = socket_write;
    st->parent.read = socket_read;
    st->parent.close = socket_close;
    st->parent.free = socket_free;
    st->s = -1;
    *out = &st->parent;
    return 0;
}

int factoryctl_git2_register_socket_stream(void) {
    git_stream_registration registration = {
        .version = GIT_STREAM_VERSION,
        .init = socket_stream_new,
        .wrap = NULL,
    };
    return git_stream_register(GIT_STREAM_STANDARD, &registration);
}
