import Foundation

/// Set once when the process is asked to stop (SIGTERM/SIGINT); read from any thread.
public final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private var sources: [DispatchSourceSignal] = []

    public init() {}

    public var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }

    public func set() {
        lock.lock()
        stopped = true
        lock.unlock()
    }

    /// Routes SIGTERM and SIGINT here (handled on a dispatch queue, not in signal context).
    public func installHandlers(queue: DispatchQueue = DispatchQueue(label: "factoryctl.signals")) {
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler { [weak self] in self?.set() }
            source.resume()
            sources.append(source)
        }
    }

    /// Sleeps up to `seconds`, waking early when stopped. Returns false if stopped.
    @discardableResult
    public func sleep(_ seconds: Double) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while !isSet {
            let left = end.timeIntervalSinceNow
            if left <= 0 { return true }
            Thread.sleep(forTimeInterval: min(left, 0.1))
        }
        return false
    }
}
