#!/usr/bin/env bash
# Builds the release that factories install, offline, from this checkout:
#   dist/factoryctl_<version>_<arch>.deb       (dpkg-deb; Depends computed by dpkg-shlibdeps)
#   dist/factoryctl_<version>_<arch>.tar.gz    (the same files under usr/, for non-Debian systems)
# The binary links the Swift runtime and Foundation statically (--static-swift-stdlib): it needs
# only Debian 12's own libraries (libhiredis0.14, libc, ...; libgit2-1.5 and libcurl4 are loaded
# on first use), no toolchain.
#
#   scripts/package.sh            build and package
#   SKIP_BUILD=1 scripts/package.sh   package the binary already in .build-static
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

version=$(sed -n 's/^ *public static let number = "\(.*\)"$/\1/p' Sources/FactoryKit/Configuration/Version.swift)
[ -n "$version" ] || { echo "package: no version in Sources/FactoryKit/Configuration/Version.swift" >&2; exit 1; }
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit-dirty"
arch=$(dpkg --print-architecture)
scratch=.build-static

if [ -z "${SKIP_BUILD:-}" ]; then
    echo "==> swift build -c release --static-swift-stdlib (factoryctl $version, commit $commit)"
    swift build -c release --product factoryctl --scratch-path "$scratch" \
        --static-swift-stdlib -Xcc "-DFACTORYCTL_COMMIT=\"$commit\""
fi
bin="$scratch/release/factoryctl"
[ -x "$bin" ] || { echo "package: $bin is missing; run without SKIP_BUILD" >&2; exit 1; }
if ldd "$bin" | grep -q -e /opt/swift -e 'libswift' -e 'libFoundation' -e 'libdispatch'; then
    echo "package: $bin still links the Swift toolchain:" >&2
    ldd "$bin" >&2
    exit 1
fi
shown=$("$bin" --version)
case "$shown" in
    "$version+"?*) commit=${shown#"$version+"} ;;   # the commit the binary says it was built from
    *) echo "package: --version says '$shown', expected '$version+<commit>'" >&2; exit 1 ;;
esac

stage=$(mktemp -d "$ROOT/.build-static/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
doc="$root/usr/share/doc/factoryctl"
install -D -m 0755 "$bin" "$root/usr/bin/factoryctl"
strip --strip-unneeded "$root/usr/bin/factoryctl"
install -D -m 0644 man/factoryctl.1 "$root/usr/share/man/man1/factoryctl.1"
gzip -9n "$root/usr/share/man/man1/factoryctl.1"
# bash-completion sources the file: no #! line.
install -d "$root/usr/share/bash-completion/completions"
sed '1{/^#!/d}' completions/factoryctl.bash > "$root/usr/share/bash-completion/completions/factoryctl"
chmod 0644 "$root/usr/share/bash-completion/completions/factoryctl"
install -D -m 0644 completions/_factoryctl "$root/usr/share/zsh/vendor-completions/_factoryctl"
install -D -m 0644 completions/factoryctl.fish "$root/usr/share/fish/vendor_completions.d/factoryctl.fish"
for unit in factoryctl-consume.service factoryctl-serve.service; do
    # Installed units run the packaged binary.
    sed -e 's|/usr/local/bin/factoryctl|/usr/bin/factoryctl|g' \
        -e "s|install -D -m 0644 deploy/$unit ~/.config/systemd/user/$unit|(installed by the package in /usr/lib/systemd/user/)|" \
        "deploy/$unit" > "$stage/$unit"
    install -D -m 0644 "$stage/$unit" "$root/usr/lib/systemd/user/$unit"
done
install -D -m 0755 scripts/update_factory.sh "$root/usr/share/factoryctl/update_factory.sh"
install -D -m 0644 deploy/factory.env.example "$doc/examples/factory.env"
install -D -m 0644 deploy/serve.env.example "$doc/examples/serve.env"
install -D -m 0644 deploy/redis-users.acl "$doc/examples/redis-users.acl"
install -D -m 0644 deploy/MIGRATING.md "$doc/examples/MIGRATING.md"
cat > "$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: factoryctl
Source: factoryctl (built from commit $commit)

Files: *
Copyright: 2026 The factoryctl developers
License: internal
 Internal fleet tooling of the factoryctl developers; no public license is granted.
EOF
date_rfc=$(git log -1 --format=%aD 2>/dev/null || date -R)
printf 'factoryctl (%s) stable; urgency=medium\n\n  * Release %s, built from commit %s.\n\n -- factoryctl developers <factoryctl@example.org>  %s\n' \
    "$version" "$version" "$commit" "$date_rfc" | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz" "$doc/copyright"

# Depends: what the binary links, as Debian packages (dpkg-shlibdeps reads the binary's NEEDED).
mkdir -p "$stage/debian"
printf 'Source: factoryctl\n\nPackage: factoryctl\nArchitecture: any\n' > "$stage/debian/control"
shlibs=$(cd "$stage" && dpkg-shlibdeps -O -e"root/usr/bin/factoryctl" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "package: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
# Loaded with dlopen on first use, so not in NEEDED: libgit2 (every git operation), libcurl
# (the HQ registration POST, the health gate) and libssl3 (rediss:// only). At run time too: CA certificates for HTTPS (git fetch, the HQ
# POST), time zones for log timestamps; the git CLI nowhere (libgit2 is native).
depends="$shlibs, libgit2-1.5, libcurl4, libssl3, ca-certificates, tzdata"
installed_size=$(du -sk "$root" | cut -f1)

mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<EOF
Package: factoryctl
Version: $version
Architecture: $arch
Maintainer: factoryctl developers <factoryctl@example.org>
Installed-Size: $installed_size
Depends: $depends
Recommends: redis-tools
Suggests: redis-server
Section: admin
Priority: optional
Description: keep a fleet of factories on the code HQ wants
 factoryctl updates git checkouts of uv-managed Python applications
 that run as systemd --user services: native git fetch and pull --rebase,
 uv sync, restart with rollback, update missions over a Redis stream,
 fleet status and the HQ HTTP endpoint. The Swift runtime is linked
 statically. Built from commit $commit.
EOF
find "$root" -type d -exec chmod 0755 {} +

mkdir -p dist
deb="dist/factoryctl_${version}_${arch}.deb"
tarball="dist/factoryctl_${version}_${arch}.tar.gz"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
tar --owner=0 --group=0 --numeric-owner --sort=name -C "$root" --exclude=DEBIAN -czf "$tarball" usr
if command -v lintian >/dev/null 2>&1; then
    # Suppressed, each on purpose (everything else, error or warning, fails the build):
    #  - statically-linked-binary, embedded-library: the Swift runtime and Foundation (with its
    #    own ICU data and zlib routines) are linked in on purpose: that is what lets the package
    #    run without a Swift toolchain.
    #  - initial-upload-closes-no-bugs: not an upload to Debian.
    lintian --fail-on error,warning --suppress-tags statically-linked-binary,embedded-library,initial-upload-closes-no-bugs \
        "$deb" 2>&1 | grep -v '^running with root privileges' || true
    lintian --fail-on error,warning --suppress-tags statically-linked-binary,embedded-library,initial-upload-closes-no-bugs \
        "$deb" >/dev/null 2>&1 || { echo "package: lintian found errors or warnings (above)" >&2; exit 1; }
fi
echo "==> $deb ($(du -h "$deb" | cut -f1)), $tarball"
echo "    Depends: $depends"
