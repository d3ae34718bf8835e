/// Errors outside the update pipeline's own report (bad input, configuration, files).
public enum FactoryError: Error, CustomStringConvertible, Sendable, Equatable {
    case invalidBranch(String, String)
    case invalidArgument(String)
    case failed(String)

    public var description: String {
        switch self {
        case .invalidBranch(let name, let why): "invalid branch name \(quoted(name)): \(why)"
        case .invalidArgument(let text), .failed(let text): text
        }
    }

    private func quoted(_ name: String) -> String {
        "'" + name.replacing("\n", with: "\\n").prefix(80) + "'"
    }
}
