import GitKit

/// Branch names accepted from operators and missions: what git accepts, minus anything that could be
/// read as an option or a range.
public enum BranchName {
    public static func validate(_ name: String) throws(FactoryError) {
        guard !name.isEmpty else { throw .invalidBranch(name, "it is empty") }
        guard !name.hasPrefix("-") else { throw .invalidBranch(name, "it starts with '-'") }
        guard !name.contains("..") else { throw .invalidBranch(name, "it contains '..'") }
        guard name.utf8.count <= 200 else { throw .invalidBranch(name, "it is longer than 200 bytes") }
        guard !name.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7F }) else {
            throw .invalidBranch(name, "it contains spaces or control characters")
        }
        // Without libgit2 only the rules above apply; whatever needs git then reports the
        // missing library itself.
        guard (try? GitNames.isValidBranchName(name)) != false else {
            throw .invalidBranch(name, "git does not accept it as a branch name")
        }
    }
}

/// git's own branch-name rules, for callers that do not import GitKit.
public enum GitNames {
    public static func isValidBranchName(_ name: String) throws -> Bool {
        try GitLibrary.initialize()
        return Repository.isValidBranchName(name)
    }
}
