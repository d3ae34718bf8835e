import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Synchronization

/// Set when the process is asked to stop (SIGTERM, SIGINT, SIGHUP, SIGQUIT; SIGPIPE for the
/// operator's commands); read from any thread. Counts the requests: a second one means "now".
public final class StopSignal: Sendable {
    private struct State {
        var stopped = false
        var requests = 0
        var firstRequest: Double?
        var handlers: [@Sendable () -> Void] = []
        /// Threads in `sleep`, each woken through its own semaphore.
        var sleepers: [Int: DispatchSemaphore] = [:]
        var nextSleeper = 0
    }

    private let state = Mutex(State())
    /// The signal sources stay alive as long as this object. Written only by `installHandlers`,
    /// which a command calls once at start-up before any other thread sees this object; never
    /// read. (DispatchSourceSignal is not Sendable, so a Mutex cannot hold it.)
    nonisolated(unsafe) private var sources: [DispatchSourceSignal] = []

    public init() {}

    public var isSet: Bool { state.withLock { $0.stopped } }

    /// How many times a stop was asked for.
    public var count: Int { state.withLock { $0.requests } }

    /// Seconds since the first stop request (nil: none yet).
    public var secondsSinceSet: Double? {
        state.withLock { $0.firstRequest }.map { Monotonic.now - $0 }
    }

    /// True once a child the process waits for should be ended too: a second request, or
    /// `grace` seconds after the first.
    public func childShouldStop(grace: Double) -> Bool {
        state.withLock { state in
            guard let first = state.firstRequest else { return false }
            return state.requests >= 2 || Monotonic.now - first >= grace
        }
    }

    public func set() {
        let (run, sleepers) = state.withLock { state in
            let first = !state.stopped
            state.stopped = true
            state.requests += 1
            if first { state.firstRequest = Monotonic.now }
            return (first ? state.handlers : [], Array(state.sleepers.values))
        }
        for sleeper in sleepers { sleeper.signal() }
        for handler in run { handler() }
    }

    /// Runs `handler` once when the signal is set (at once if it already is), on the setting
    /// thread. Used to interrupt a blocking read, so that nothing has to poll for the stop.
    public func onSet(_ handler: @escaping @Sendable () -> Void) {
        let already = state.withLock { state in
            if !state.stopped { state.handlers.append(handler) }
            return state.stopped
        }
        if already { handler() }
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
        let wake = DispatchSemaphore(value: 0)
        let id: Int? = state.withLock { state in
            guard !state.stopped else { return nil }
            state.nextSleeper += 1
            state.sleepers[state.nextSleeper] = wake
            return state.nextSleeper
        }
        guard let id else { return false }
        _ = wake.wait(timeout: .now() + max(0, seconds))
        return state.withLock { state in
            state.sleepers[id] = nil
            return !state.stopped
        }
    }
}
