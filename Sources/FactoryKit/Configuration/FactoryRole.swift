/// `FACTORY_ROLE`: what this machine is in the fleet. The HEADQUARTERS rule lives here and
/// nowhere else: only HQ may publish missions (the CLI and the HTTP routes) and forget factories.
public struct FactoryRole: Sendable, Equatable, CustomStringConvertible {
    public static let headquarters = FactoryRole("HEADQUARTERS")
    /// What a machine that does not say is.
    public static let localWorker = FactoryRole("LOCAL_WORKER")

    public let name: String

    public init(_ name: String) {
        self.name = name
    }

    public var isHeadquarters: Bool { self == .headquarters }

    public var description: String { name }

    /// What only HQ may do.
    public enum Action: Sendable {
        /// Publish a mission (`publish`, and the gateway's publishing routes).
        case publish
        /// Remove a factory from the registry (`forget`).
        case forget
        /// Give a factory its own credentials (`enroll`).
        case enroll
    }

    /// The HEADQUARTERS rule: nothing when this machine may do `action`, else the refusal.
    public func authorize(_ action: Action) throws(Refusal) {
        guard !isHeadquarters else { return }
        throw Refusal(role: self, action: action)
    }

    /// A machine that is not HQ asked to do what only HQ may.
    public struct Refusal: Error, CustomStringConvertible, Sendable {
        public let role: FactoryRole
        public let action: Action

        /// The refusal without the role: what an HTTP client is told (the existing HQ's words).
        public var summary: String {
            switch action {
            case .publish: "delegation publish not allowed on this machine"
            case .forget: "forget is not allowed on this machine"
            case .enroll: "enroll is not allowed on this machine"
            }
        }

        public var description: String {
            let hint = switch action {
            case .publish: "publish from HQ"
            case .forget, .enroll: "run it at HQ"
            }
            return "\(summary) (FACTORY_ROLE=\(role)); \(hint), where FACTORY_ROLE=\(FactoryRole.headquarters)"
        }
    }
}
