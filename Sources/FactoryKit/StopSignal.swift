import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// Set once when the process is asked to stop (SIGTERM/SIGINT); read from any thread.
public final class StopSignal: @unchecked Sendable {
    private let condition = Condition()
    private var stopped = false
    private var sources: [DispatchSourceSignal] = []
    private var handlers: [@Sendable () -> Void] = []

    public init() {}

    public var isSet: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    public func set() {
        condition.lock()
        let first = !stopped
        stopped = true
        let run = first ? handlers : []
        condition.broadcast()
        condition.unlock()
        for handler in run { handler() }
    }

    /// Runs `handler` once when the signal is set (at once if it already is), on the setting
    /// thread. Used to interrupt a blocking read, so that nothing has to poll for the stop.
    public func onSet(_ handler: @escaping @Sendable () -> Void) {
        condition.lock()
        if stopped {
            condition.unlock()
            handler()
            return
        }
        handlers.append(handler)
        condition.unlock()
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

    /// Sleeps up to `seconds` (in the kernel, no polling), waking early when stopped.
    /// Returns false if stopped.
    @discardableResult
    public func sleep(_ seconds: Double) -> Bool {
        let end = Monotonic.now + seconds
        condition.lock()
        defer { condition.unlock() }
        while !stopped {
            if !condition.wait(until: end) { return !stopped }
        }
        return false
    }
}
