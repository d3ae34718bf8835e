import FoundationEssentials

/// How one mission is written: an entry on the shared stream for the factories that read it (not
/// enrolled, and the existing HQ's consumers), in today's wire format, and one entry in each
/// enrolled factory's inbox that names only that factory. So an inbox entry stays the size of a
/// one-factory mission however many factories a wave has, and only the shared entry carries a
/// list, of the factories that are not enrolled.
///
/// With a signer every entry is signed over its own envelope bytes. The shared entry carries both
/// signatures (`signature` for factoryctl consumers older than `signature_v2`); an inbox entry only
/// `signature_v2` and its fields: inboxes came after `signature_v2`, and a consumer that reads one
/// never accepts the legacy signature, so signing it would double the cost for nobody.
struct MissionFanout {
    /// The shared stream's entry: its envelope text and extra fields (nil: every target is enrolled).
    var shared: (envelope: String, extra: [String])?
    /// One entry per enrolled factory: its inbox key, envelope text (its id when `template` is
    /// set) and extra fields, sorted by id.
    var inboxes: [(key: String, envelope: String, extra: [String])] = []
    /// The inbox envelopes' text before and after the id (`target_factory_id`'s value), when
    /// every id is written as it is (the job id alphabet needs no JSON escape): Redis builds
    /// each envelope from it, so HQ sends an id per inbox, not an envelope.
    private(set) var template: (prefix: String, suffix: String)?

    /// The entries of `mission` for `inboxes` (enrolled factories among its targets) and the
    /// shared stream. Throws `OversizedMission` before anything is written when the shared entry's
    /// envelope is over the consumers' field limit (`StreamEntry.maxFieldBytes`).
    init(_ mission: Mission, inboxes: [String], signer: MissionSigner?, binding: MissionSigning.Binding,
         issuedAt: Date) throws {
        if let sharedMission = Self.sharedMission(mission, enrolled: Set(inboxes)) {
            let text = sharedMission.envelope.json.pythonJSON
            try Self.checkSize(text, mission: sharedMission)
            shared = (text, try Self.sign(sharedMission, text, signer: signer, binding: binding, issuedAt: issuedAt, legacy: true))
        }
        let ids = inboxes.sorted()
        template = Self.template(mission, ids: ids)
        self.inboxes.reserveCapacity(ids.count)
        for id in ids {
            let own = mission.retargeted(.ids([id]))
            let text = template.map { $0.prefix + id + $0.suffix } ?? own.envelope.json.pythonJSON
            try Self.checkSize(text, mission: own)
            self.inboxes.append((FactoryKeys(id).inbox, template == nil ? text : id,
                                 try Self.sign(own, text, signer: signer, binding: binding, issuedAt: issuedAt, legacy: false)))
        }
    }

    /// The text around the id in `mission`'s envelope for one of `ids`, when each of them would be
    /// written as it is and the id's place is found exactly once; else nil (each envelope is
    /// then encoded and sent whole).
    static func template(_ mission: Mission, ids: [String]) -> (prefix: String, suffix: String)? {
        guard let first = ids.first, ids.allSatisfy(MissionID.isValid) else { return nil }
        let text = mission.retargeted(.ids([first])).envelope.json.pythonJSON
        let marker = "\"target_factory_id\": \"" + first + "\""
        let found = text.ranges(of: marker)
        guard found.count == 1, let range = found.first else { return nil }
        let idStart = text.index(range.lowerBound, offsetBy: marker.count - first.count - 1)
        let idEnd = text.index(idStart, offsetBy: first.count)
        let prefix = String(text[..<idStart]), suffix = String(text[idEnd...])
        return prefix + first + suffix == text ? (prefix, suffix) : nil
    }

    /// The mission as the shared stream carries it: named ids that read an inbox are left out
    /// (nil when that leaves none); a broadcast or a glob is unchanged (its envelope names no id).
    static func sharedMission(_ mission: Mission, enrolled: Set<String>) -> Mission? {
        guard case .ids(let ids) = mission.target else { return mission }
        let rest = ids.filter { !enrolled.contains($0) }
        if rest.isEmpty { return nil }
        return rest.count == ids.count ? mission : mission.retargeted(.ids(rest))
    }

    private static func checkSize(_ text: String, mission: Mission) throws(OversizedMission) {
        let bytes = text.utf8.count
        guard bytes > StreamEntry.maxFieldBytes else { return }
        var named = 0
        if case .ids(let ids) = mission.target { named = ids.count }
        throw OversizedMission(jobID: mission.jobID, bytes: bytes, named: named)
    }

    private static func sign(_ mission: Mission, _ text: String, signer: MissionSigner?, binding: MissionSigning.Binding,
                             issuedAt: Date, legacy: Bool) throws -> [String] {
        guard let signer else { return [] }
        let envelope = mission.envelope
        let fields = try signer.sign(jobID: envelope.jobID, idempotencyKey: envelope.idempotencyKey, envelope: text, binding: binding,
                                     issuedAt: issuedAt, lifetime: Double(envelope.timeoutSeconds), legacy: legacy)
        return fields.flatMap { [$0.0, $0.1] }
    }
}

/// A mission whose shared-stream envelope is larger than a consumer reads
/// (`StreamEntry.maxFieldBytes`): every factory would dead-letter it, so it is not published.
public struct OversizedMission: Error, CustomStringConvertible, Sendable {
    public let jobID: String
    public let bytes: Int
    /// The ids it names (factories that are not enrolled, on the shared stream).
    public let named: Int

    public var description: String {
        let who = named > 0 ? " naming \(named) factories that are not enrolled" : ""
        return "the mission's envelope\(who) would be \(bytes) bytes, over the \(StreamEntry.maxFieldBytes)-byte field limit every consumer enforces (each would dead-letter it); nothing was published. Target fewer factories at once (a rollout with a smaller --batch or --max-in-flight), or a glob, or enroll them (`factoryctl enroll ID`: an enrolled factory's inbox entry names only that factory)"
    }
}
