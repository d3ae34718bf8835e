import FoundationEssentials
import FactoryBasics
import Glibc
import Logging
import RedisKit

/// A stream entry id, `<milliseconds>-<sequence>`, ordered as Redis orders them.
public struct StreamID: Comparable, Sendable, CustomStringConvertible {
    public let milliseconds: UInt64
    public let sequence: UInt64

    public init(milliseconds: UInt64, sequence: UInt64 = 0) {
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let ms = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return nil }
        self.init(milliseconds: ms, sequence: seq)
    }

    public var description: String { "\(milliseconds)-\(sequence)" }

    public static func < (a: StreamID, b: StreamID) -> Bool {
        (a.milliseconds, a.sequence) < (b.milliseconds, b.sequence)
    }
}

/// Where this factory joined the fleet: the mission stream's position (Redis's clock) when its
/// consumer first started, before it created its group or registered. A broadcast or glob
/// mission from before that was never meant for it — HQ did not count it among the job's
/// factories — so it is skipped, even when someone created the factory's group in advance at `0`
/// and the whole stream's history is delivered to it. A mission that names the factory runs
/// whenever it was published. Kept in `.git/factoryctl/joined.json`.
final class JoinFloor {
    let path: String
    private(set) var floor: StreamID?

    init(gitDirectory: String) {
        path = gitDirectory + "/factoryctl/joined.json"
        let saved = FileManager.default.contents(atPath: path).flatMap { try? JSONValue.parse(bytes: $0) }
        floor = saved?["floor"]?.string.flatMap(StreamID.init)
    }

    /// Records the floor on the first start; a no-op once there is one. A checkout that already
    /// ran missions (`consumedBefore`: a factory upgraded from a factoryctl without the floor) gets
    /// `0-0`: it was a member all along. Not written, nothing is consumed.
    func establish(redis: RedisClient, consumedBefore: Bool, logger: Logger) throws {
        guard floor == nil else { return }
        let now = try Self.serverTime(redis)
        let value = consumedBefore ? StreamID(milliseconds: 0) : now
        let record: JSONValue = .object([
            "floor": .string(value.description), "recorded_at_ms": .int(Int64(now.milliseconds)),
            "reason": .string(consumedBefore ? "upgraded: this checkout ran missions before" : "first start"),
        ])
        do {
            try FileManager.default.createDirectory(atPath: path.deletingLastPathComponent, withIntermediateDirectories: true)
            try FileWriting.replace(path, with: Array(record.pythonJSON.utf8))
        } catch {
            throw FactoryError.failed("could not record where this factory joined the fleet in \(path) (\(error)); not consuming until it can. Check that .git/factoryctl is writable")
        }
        floor = value
        if consumedBefore {
            logger.notice("joined the fleet before this factoryctl recorded join points: every mission in the group counts (\(path))")
        } else {
            logger.notice("joined the fleet at stream position \(value): broadcast and glob missions published before it are skipped (\(path))")
        }
    }

    /// Whether a mission for `target` in entry `entryID` is one this factory may act on.
    func admits(entryID: String, target: MissionTarget, factoryID: String) -> Bool {
        if case .ids(let ids) = target, ids.contains(factoryID) { return true }
        guard let floor, let id = StreamID(entryID) else { return true }
        return id >= floor
    }

    /// The floor a mission for `target` is held to: none when it names this factory (it runs
    /// whenever it was published) or when no floor is recorded.
    func floor(for target: MissionTarget, factoryID: String) -> StreamID? {
        if case .ids(let ids) = target, ids.contains(factoryID) { return nil }
        return floor
    }

    /// Whether a signed mission issued at `issuedAt` (HQ's clock, whole epoch seconds) comes after
    /// `floor` (Redis's clock). The entry id says when the entry was added, which a stream writer
    /// chooses (`XADD stream * …` adds a copy of an old signed entry after any floor); the signed
    /// `issued_at` cannot be moved. Compared by the second: `issued_at` is truncated to one, so a
    /// mission published in the very second the factory joined counts as after it. No clock
    /// skew is allowed here (any would let older copies through); HQ's clock running behind
    /// Redis's only delays when a new factory starts acting on broadcasts.
    static func admits(issuedAt: Int64, floor: StreamID) -> Bool {
        issuedAt >= Int64(floor.milliseconds / 1000)
    }

    /// Redis's clock as a stream position (`TIME`: the clock stream ids are made from).
    static func serverTime(_ redis: RedisClient) throws -> StreamID {
        let reply = try redis.command(["TIME"])
        guard let parts = reply.array, parts.count == 2, let seconds = parts[0].text.flatMap(UInt64.init),
              let micros = parts[1].text.flatMap(UInt64.init) else {
            throw RedisError.unexpectedReply("TIME returned \(reply)")
        }
        return StreamID(milliseconds: seconds * 1000 + micros / 1000)
    }
}
