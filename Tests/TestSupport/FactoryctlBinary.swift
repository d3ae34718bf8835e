import Foundation

/// The built `factoryctl` binary, run to its end as an operator or a script runs it: the one way
/// tests run it and read its exit code, stdout and stderr. (A run the test signals or watches
/// while it goes on, `consume`, `serve` or a long `update`, is a `ConsumerProcess`.)
///
/// Not named `Factoryctl`: that is the executable's root command, which tests that import
/// `factoryctl` also see.
public enum FactoryctlBinary {
    /// The binary under test (`FACTORYCTL_BIN`, else the one built next to the test bundle).
    public static var path: String { Package.factoryctl }

    /// Runs `factoryctl <arguments>`, then `--factory-dir <factoryDir>` when given, with exactly
    /// `environment` (a world's: its PATH puts the fake systemctl first), in `directory` when given.
    @discardableResult
    public static func run(_ arguments: [String], factoryDir: String? = nil, environment: [String: String],
                           in directory: String? = nil) throws -> Command.Result {
        let located = factoryDir.map { ["--factory-dir", $0] } ?? []
        return try Command.run([path] + arguments + located, in: directory, environment: environment)
    }
}

extension Command.Result {
    /// Stdout is not one JSON object.
    public struct NotJSON: Error, CustomStringConvertible {
        public let result: Command.Result
        public var description: String {
            "stdout is not one JSON object (exit \(result.status)): \(result.stdout)\nstderr: \(result.stderr)"
        }
    }

    /// Stdout parsed as one JSON object (`--json` output); throws, quoting stdout and stderr,
    /// when it is not one.
    public func json() throws -> [String: Any] {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any] else {
            throw NotJSON(result: self)
        }
        return object
    }
}
