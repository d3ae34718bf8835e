import RedisKit

/// A write that happens only while `key` still holds `value` (a rollout runner's lease): checked
/// by Redis in the same script as the write, so a runner that stalled past its lease (SIGSTOP,
/// swap, a long GC pause) and lost it to another runner writes nothing, however late it wakes.
/// A fenced write that finds the lease gone fails with the reply code `FENCED`.
public struct WriteFence: Sendable, Equatable {
    public let key: String
    public let value: String

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    public static let replyCode = "FENCED"

    /// The check every fenced script starts with: `KEYS[index]` must hold `ARGV[valueIndex]`
    /// (an empty value: no fence).
    static func check(keyIndex: Int, valueIndex: Int) -> String {
        """
        if ARGV[\(valueIndex)] ~= '' and redis.call('GET', KEYS[\(keyIndex)]) ~= ARGV[\(valueIndex)] then
          return redis.error_reply('\(replyCode) ' .. KEYS[\(keyIndex)] .. ' is no longer held by this writer: nothing was written')
        end
        """
    }

    /// One command on `key`, run only while the fence holds.
    static let commandScript = check(keyIndex: 1, valueIndex: 1) + "\nreturn redis.call(unpack(ARGV, 2))"
}

extension RedisClient {
    /// `command` (on `key`), or with a fence, the same command run only while the fence holds.
    @discardableResult
    func command(_ command: [String], on key: String, fence: WriteFence?) throws(RedisError) -> RedisReply {
        guard let fence else { return try self.command(command) }
        return try self.command(["EVAL", WriteFence.commandScript, "2", fence.key, key, fence.value] + command)
    }
}
