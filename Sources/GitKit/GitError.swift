import CGit2

/// A failed libgit2 call, carrying libgit2's own message.
public struct GitError: Error, CustomStringConvertible, Sendable {
    /// What factoryctl was doing ("fetch origin", "checkout main").
    public let operation: String
    /// The libgit2 return code (`GIT_ENOTFOUND`, `GIT_ECONFLICT`, ...).
    public let code: Int32
    /// libgit2's error class (`GIT_ERROR_NET`, `GIT_ERROR_SSH`, ...), 0 when unknown.
    public let errorClass: Int32
    /// libgit2's message, or a generic one when libgit2 left none.
    public let message: String

    public var kind: Kind { Kind(code: code) }

    public enum Kind: Sendable, Equatable {
        case notFound, conflict, unmerged, authentication, alreadyApplied, locked, userCancelled, other

        init(code: Int32) {
            switch code {
            case GIT_ENOTFOUND.rawValue: self = .notFound
            case GIT_ECONFLICT.rawValue: self = .conflict
            case GIT_EUNMERGED.rawValue: self = .unmerged
            case GIT_EAUTH.rawValue: self = .authentication
            case GIT_EAPPLIED.rawValue: self = .alreadyApplied
            case GIT_ELOCKED.rawValue: self = .locked
            case GIT_EUSER.rawValue: self = .userCancelled
            default: self = .other
            }
        }
    }

    public init(operation: String, code: Int32, errorClass: Int32 = 0, message: String) {
        self.operation = operation
        self.code = code
        self.errorClass = errorClass
        self.message = message
    }

    /// Reads `git_error_last()` at once; it may be NULL.
    init(operation: String, code: Int32) {
        if let last = git_error_last(), let text = last.pointee.message {
            self.init(operation: operation, code: code, errorClass: last.pointee.klass, message: String(cString: text))
        } else {
            self.init(operation: operation, code: code, message: "libgit2 error \(code)")
        }
    }

    /// True for errors of the network/transport layers (unreachable remote, TLS, SSH).
    public var isTransport: Bool {
        [GIT_ERROR_NET, GIT_ERROR_SSH, GIT_ERROR_OS, GIT_ERROR_HTTP, GIT_ERROR_SSL, GIT_ERROR_CALLBACK]
            .map { Int32($0.rawValue) }.contains(errorClass) || kind == .authentication
    }

    public var description: String { "\(operation): \(message)" }
}

extension GitError {
    /// libgit2 itself could not be loaded (or lacks a function factoryctl needs).
    public var isLibraryMissing: Bool { operation == "load libgit2" }
}

/// The one place where libgit2 return codes become thrown errors.
@discardableResult
@inline(__always)
func check(_ code: Int32, _ operation: @autoclosure () -> String) throws -> Int32 {
    if code < 0 { throw GitError(operation: operation(), code: code) }
    return code
}
