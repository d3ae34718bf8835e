import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// Small file writes with plain POSIX calls. Foundation's `Data.write(to:)` fsyncs every file;
/// the journal and history are written on every update and must survive a killed process (the
/// page cache does), not a power cut, so they do without that fsync, as git's own refs do.
enum FileWriting {
    /// Replaces the file at `path` with `bytes` (through `path.tmp` and rename, so a reader never
    /// sees a torn file).
    static func replace(_ path: String, with bytes: [UInt8], mode: mode_t = 0o644) throws {
        let temporary = path + ".tmp.\(getpid())"
        unlink(temporary) // a leftover from a killed writer would keep its own mode
        // O_EXCL | O_NOFOLLOW: a file or symlink planted at the name since is never written through.
        _ = try write(temporary, bytes, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw FactoryError.failed("could not write \(path): \(String(cString: strerror(code)))")
        }
    }

    /// Appends `bytes` with one `write` on an `O_APPEND` descriptor (concurrent appenders do not
    /// interleave within it); returns the file's size afterwards.
    @discardableResult
    static func append(_ path: String, _ bytes: [UInt8]) throws -> Int {
        try write(path, bytes, flags: O_WRONLY | O_CREAT | O_APPEND)
    }

    private static func write(_ path: String, _ bytes: [UInt8], flags: Int32, mode: mode_t = 0o644) throws -> Int {
        let fd = open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FactoryError.failed("could not open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw FactoryError.failed("could not write \(path): \(String(cString: strerror(errno)))")
            }
            offset += written
        }
        var info = stat()
        return fstat(fd, &info) == 0 ? Int(info.st_size) : 0
    }
}
