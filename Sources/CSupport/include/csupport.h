#ifndef FACTORYCTL_CSUPPORT_H
#define FACTORYCTL_CSUPPORT_H

#include <spawn.h>

/* glibc's posix_spawn_file_actions_addchdir_np is only declared under _GNU_SOURCE. */
int factoryctl_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);

/* Returns freed heap memory to the kernel (glibc's malloc_trim, not in Swift's Glibc module). */
int factoryctl_malloc_trim(void);

/* Asks the kernel to SIGKILL this process when its parent dies (prctl is variadic); returns
   -1 when the parent is already gone (re-parented to `expected_parent` no longer). */
int factoryctl_die_with_parent(int expected_parent);

/* The git commit this binary was built from (-DFACTORYCTL_COMMIT="..."), or "". */
const char *factoryctl_build_commit(void);

/* Drops this process's page-table entries for clean, read-only, file-backed mappings (its own
   code and read-only data, and those of shared libraries) with MADV_DONTNEED. Nothing is lost:
   such pages are re-read from the page cache when touched again. Mappings holding any page this
   process wrote (copy-on-write, counted as Anonymous: relocated RELRO data) are left alone; a
   page that is dirty only in the page cache (a binary just written by the linker) is not
   written by us and stays safe in the cache. Returns the kB released from RSS, or -1. */
long factoryctl_release_clean_pages(void);

/* CA certificates for libgit2's HTTPS transport, loaded only when an HTTPS remote is used.
   libgit2 (built with mbedTLS, as Debian's is) parses the whole CA bundle inside
   git_libgit2_init; this library defines mbedtls_x509_crt_parse_file so that the call made
   during init is recorded instead of run. factoryctl_load_ca_certificates() runs the recorded
   calls (once); every later call goes straight to mbedTLS. Returns the number of deferred
   loads run now, or -1 when one failed. */
int factoryctl_load_ca_certificates(void);
/* The same, parsing `bundle` (a PEM file of CA certificates) in place of each recorded path when
   it is neither NULL nor empty: that bundle is then the only one trusted. The first load decides.
   -1 also when a bundle is named and libgit2 recorded no load to parse it into. */
int factoryctl_load_ca_certificates_from(const char *bundle);
/* How many CA bundle loads are waiting (0 once loaded, or when libgit2 does not use mbedTLS). */
int factoryctl_deferred_ca_loads(void);
/* 1 once factoryctl_load_ca_certificates has run. */
int factoryctl_ca_loaded(void);

#endif
