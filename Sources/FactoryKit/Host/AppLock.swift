import FoundationEssentials
import FactoryBasics
import Glibc

/// The app's update lock (`UA_FACTORY_UPDATE_LOCK`): a file the application `flock`s while it
/// must not be interrupted (balena's update lock). factoryctl takes the same `flock` before it
/// changes anything and holds it until the update is over; the kernel drops a lock when its
/// holder exits, so an app that crashed never leaves a stale one. The file is created if missing
/// and never written to.
public final class AppLock {
    private let descriptor: Int32
    public let path: String

    public enum Failure: Error, Sendable, Equatable {
        /// Still held by the app after waiting `waited` seconds.
        case held(path: String, waited: Double)
        case io(path: String, errno: Int32)
        case cancelled
    }

    /// How often a wait tries the lock again.
    public static let pollInterval = 0.1
    /// The default longest wait (`--app-lock-timeout`, `UA_FACTORY_UPDATE_LOCK_TIMEOUT`).
    public static let defaultTimeout = 600.0
    public static let maximumTimeout = 86_400.0

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    /// Takes the lock, trying again every `pollInterval` for up to `timeout` seconds (0: once);
    /// `onWait` is told once when the app holds it; `shouldCancel` ends the wait early.
    public static func acquire(path: String, timeout: Double, onWait: () -> Void = {},
                               shouldCancel: () -> Bool = { false }) throws(Failure) -> AppLock {
        let fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: path, errno: errno) }
        let started = Monotonic.now
        var told = false
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            guard code == EWOULDBLOCK || code == EINTR else {
                close(fd)
                throw .io(path: path, errno: code)
            }
            let waited = Monotonic.now - started
            guard waited < timeout else {
                close(fd)
                throw .held(path: path, waited: waited)
            }
            if shouldCancel() {
                close(fd)
                throw .cancelled
            }
            if !told {
                told = true
                onWait()
            }
            sleep(seconds: min(pollInterval, max(0.001, timeout - waited)))
        }
        return AppLock(descriptor: fd, path: path)
    }
}
