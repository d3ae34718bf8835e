import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// Set when the process is asked to stop (SIGTERM, SIGINT, SIGHUP, SIGQUIT; SIGPIPE for the
/// operator's commands); read from any thread. Counts the requests: a second one means "now".
public final class StopSignal: @unchecked Sendable {
    private let condition = Condition()
    private var stopped = false
    private var requests = 0
    private var firstRequest: Double?
    private var sources: [DispatchSourceSignal] = []
    private var handlers: [@Sendable () -> Void] = []

    public init() {}

    public var isSet: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    /// How many times a stop was asked for.
    public var count: Int {
        condition.lock()
        defer { condition.unlock() }
        return requests
    }

    /// Seconds since the first stop request (nil: none yet).
    public var secondsSinceSet: Double? {
        condition.lock()
        defer { condition.unlock() }
        return firstRequest.map { Monotonic.now - $0 }
    }

    /// True once a child the process waits for should be ended too: a second request, or
    /// `grace` seconds after the first.
    public func childShouldStop(grace: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard let firstRequest else { return false }
        return requests >= 2 || Monotonic.now - firstRequest >= grace
    }

    public func set() {
        condition.lock()
        let first = !stopped
        stopped = true
        requests += 1
        if first { firstRequest = Monotonic.now }
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

    /// Routes SIGTERM, SIGINT, SIGHUP (the SSH session or terminal went away) and SIGQUIT here,
    /// and SIGPIPE too with `brokenPipe` (a command whose output went to a pipe or terminal that
    /// is gone); handled on a dispatch queue, not in signal context. The long-running consumer
    /// leaves SIGPIPE ignored: a Redis socket closed under it is an error, not a stop.
    public func installHandlers(brokenPipe: Bool = false, queue: DispatchQueue = DispatchQueue(label: "factoryctl.signals")) {
        for signalNumber in [SIGTERM, SIGINT, SIGHUP, SIGQUIT] + (brokenPipe ? [SIGPIPE] : []) {
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
