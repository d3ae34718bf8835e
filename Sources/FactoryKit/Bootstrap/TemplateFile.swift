import FoundationEssentials
import Glibc

/// A file of the template repository that bootstrap copies out of the checkout (`.env.example`,
/// `deploy/factory.service`): read only when it is a regular file inside the checkout — not a
/// symlink (which could point at `~/.ssh/id_ed25519` or the env file bootstrap just wrote), not
/// a device or FIFO, at most `limit` bytes.
enum TemplateFile {
    static let limit = 64 * 1024

    static func read(_ path: String, within root: String) -> [UInt8]? {
        guard let resolvedRoot = resolve(root), let resolved = resolve(path), resolved.hasPrefix(resolvedRoot + "/") else { return nil }
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= limit else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + offset, $0.count - offset) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            offset += count
        }
        return Array(bytes.prefix(offset))
    }

    private static func resolve(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }
}
