import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// An exclusive `flock(2)` on `.git/factoryctl/update.lock`. The kernel drops it when the holder
/// exits, so a crashed update never leaves a stale lock; the file holds the holder's pid for messages.
public final class CheckoutLock {
    private let descriptor: Int32
    public let path: String

    public enum Failure: Error, Sendable {
        case held(path: String, pid: Int32?)
        case io(path: String, errno: Int32)
        case cancelled
    }

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    /// Takes the lock; with `wait`, waits until the holder lets go (calling `onWait` first),
    /// giving up when `shouldCancel` says so.
    public static func acquire(gitDirectory: String, wait: Bool, onWait: (Int32?) -> Void = { _ in },
                               shouldCancel: () -> Bool = { false }) throws(Failure) -> CheckoutLock {
        let directory = gitDirectory + "/factoryctl"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/update.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: path, errno: errno) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            guard code == EWOULDBLOCK else {
                close(fd)
                throw .io(path: path, errno: code)
            }
            let holder = readPID(fd)
            guard wait else {
                close(fd)
                throw .held(path: path, pid: holder)
            }
            onWait(holder)
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let code = errno
                guard code == EWOULDBLOCK || code == EINTR else {
                    close(fd)
                    throw .io(path: path, errno: code)
                }
                if shouldCancel() {
                    close(fd)
                    throw .cancelled
                }
                usleep(50_000)
            }
        }
        let pid = "\(getpid())\n"
        ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
        return CheckoutLock(descriptor: fd, path: path)
    }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = pread(fd, &buffer, 31, 0)
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer.prefix(count), as: UTF8.self).trimmed)
    }
}
