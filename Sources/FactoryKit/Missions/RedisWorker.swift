import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import RedisKit

/// Serves async callers from one Redis connection on its own serial queue, so blocking hiredis
/// calls never run on the cooperative thread pool. The connection reconnects on the next call
/// after a failure.
// @unchecked: the only state is `bus` (a non-Sendable hiredis owner), and it is touched only on
// `queue`, a serial queue, so no two threads ever use it at once.
public final class RedisWorker: @unchecked Sendable {
    private let queue = DispatchQueue(label: "factoryctl.redis")
    // Touched only on `queue`.
    private let bus: MissionBus

    public init(bus: MissionBus) {
        self.bus = bus
    }

    public func run<T: Sendable>(_ body: @escaping @Sendable (MissionBus) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body(self.bus) })
            }
        }
    }
}
