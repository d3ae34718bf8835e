import Foundation

/// A fresh directory under the system temp dir, removed when the owner lets go.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(_ prefix: String = "factoryctl-test") {
        let template = (NSTemporaryDirectory() as NSString).appendingPathComponent("\(prefix).XXXXXX")
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else { fatalError("mkdtemp failed: \(errno)") }
        path = String(cString: made)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    public func join(_ component: String) -> String {
        (path as NSString).appendingPathComponent(component)
    }
}

/// Runs a program with argv (no shell) and returns stdout; throws on a non-zero exit.
public struct Command: Sendable {
    public struct Failed: Error, CustomStringConvertible {
        public let argv: [String]
        public let status: Int32
        public let output: String
        public var description: String { "\(argv.joined(separator: " ")) exited \(status): \(output)" }

        public init(argv: [String], status: Int32, output: String) {
            self.argv = argv
            self.status = status
            self.output = output
        }
    }

    public struct Result: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// Runs and collects stdout and stderr separately.
    @discardableResult
    public static func run(_ argv: [String], in directory: String? = nil, environment: [String: String]? = nil,
                           input: String? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let inputPipe = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
        try process.run()
        if let input {
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
            try inputPipe.fileHandleForWriting.close()
        }
        let errorCollector = DataBox()
        let group = DispatchGroup()
        group.enter()
        Thread.detachNewThread {
            errorCollector.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Result(status: process.terminationStatus,
                      stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: errorCollector.data, as: UTF8.self))
    }

    /// Runs and returns trimmed stdout, throwing unless the exit status is 0.
    @discardableResult
    public static func check(_ argv: [String], in directory: String? = nil, environment: [String: String]? = nil) throws -> String {
        let result = try run(argv, in: directory, environment: environment)
        guard result.status == 0 else { throw Failed(argv: argv, status: result.status, output: result.stdout + result.stderr) }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

final class DataBox: @unchecked Sendable {
    var data = Data()
}
