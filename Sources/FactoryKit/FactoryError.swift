import GitKit

/// Errors outside the update pipeline's own report (bad input, configuration, Redis).
public enum FactoryError: Error, CustomStringConvertible, Sendable, Equatable {
    case invalidBranch(String, String)
    case invalidArgument(String)
    case notAllowed(String)
    case unavailable(String)
    case failed(String)

    public var description: String {
        switch self {
        case .invalidBranch(let name, let why): "invalid branch name \(quoted(name)): \(why)"
        case .invalidArgument(let text), .notAllowed(let text), .unavailable(let text), .failed(let text): text
        }
    }

    private func quoted(_ name: String) -> String {
        "'" + name.replacingOccurrences(of: "\n", with: "\\n").prefix(80) + "'"
    }
}

/// Re-exported so FactoryKit callers need not import GitKit for name checks.
public enum GitNames {
    public static func isValidBranchName(_ name: String) -> Bool {
        GitLibrary.initialize()
        return Repository.isValidBranchName(name)
    }
}
