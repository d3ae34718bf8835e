import FoundationEssentials
import FactoryBasics
import Glibc
import Logging

/// The units bootstrap installs and starts with `systemctl --user` (argv, no shell): the app's
/// own unit when the template ships `deploy/factory.service`, and `factoryctl-consume.service`
/// (installed by the package). Each call is one that changes nothing when it is already so:
/// a unit file is written only when its bytes differ, a unit is enabled only when it is not,
/// started only when it is not active.
struct BootstrapServices {
    let runner: ProcessRunner
    let environment: [String: String]
    let logger: Logger

    /// `$XDG_CONFIG_HOME/systemd/user` (else `~/.config/systemd/user`): where systemd looks for
    /// a user's own units.
    var unitDirectory: String { ConsumerEnvFile.configHome(environment: environment) + "/systemd/user" }

    /// The app's unit from the template at `path`, with the placeholder filled in; nil when the
    /// template ships none.
    static func renderUnit(template path: String, appDirectory: String) -> String? {
        guard let data = TemplateFile.read(path, within: appDirectory) else { return nil }
        return String(decoding: data, as: UTF8.self).replacing(BootstrapRequest.unitPlaceholder, with: appDirectory)
    }

    /// A unit name systemd accepts (and nothing a path could be made of).
    static func isUnitName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 255 && !name.hasPrefix(".") && name.utf8.allSatisfy {
            ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || [58, 95, 46, 64, 45].contains($0)
        }
    }

    /// Writes `<unit>` into the user's unit directory unless it already holds exactly `text`;
    /// true when it was written.
    func install(_ unit: String, text: String) throws(BootstrapFailure) -> Bool {
        let path = unitDirectory + "/" + unit
        if FileManager.default.contents(atPath: path) == Data(text.utf8) { return false }
        do {
            try ReleasesLayout.makeDirectories(unitDirectory)
            try FileWriting.replace(path, with: Array(text.utf8), mode: 0o644)
        } catch {
            throw BootstrapFailure(.failed, "could not install the app's unit \(path): \(error)")
        }
        logger.info("installed \(path)")
        return true
    }

    func isEnabled(_ unit: String) -> Bool {
        guard let result = try? runner.run(["systemctl", "--user", "is-enabled", unit], timeout: 30) else { return false }
        return result.succeeded && result.outputTail.trimmed == "enabled"
    }

    func isActive(_ unit: String) -> Bool {
        guard let result = try? runner.run(["systemctl", "--user", "is-active", unit], timeout: 30) else { return false }
        return result.succeeded && result.outputTail.trimmed == "active"
    }

    /// `systemctl --user <verb> [unit]`; a failure in systemctl's own words.
    func systemctl(_ verb: String, _ unit: String? = nil) throws(BootstrapFailure) {
        let argv = ["systemctl", "--user", verb] + (unit.map { [$0] } ?? [])
        let result: ProcessResult
        do {
            result = try runner.run(argv, timeout: 120)
        } catch {
            throw BootstrapFailure(.failed, "\(argv.joined(separator: " ")) could not run: \(error)")
        }
        guard result.succeeded else {
            let hint = unit == BootstrapRequest.consumerUnit
                ? " (factoryctl's package installs it in /usr/lib/systemd/user; from a source checkout, install deploy/\(BootstrapRequest.consumerUnit): docs/install.md)" : ""
            throw BootstrapFailure(.failed, "\(argv.joined(separator: " ")) failed: \(result.failureSummary)\(hint)")
        }
    }

    /// Enables and starts `unit` as needed (`restart`: restart it when it is already active, for
    /// a unit whose file or environment changed); what was done, nil when nothing was.
    func enableAndStart(_ unit: String, restart: Bool) throws(BootstrapFailure) -> String? {
        var done: [String] = []
        if !isEnabled(unit) {
            try systemctl("enable", unit)
            done.append("enabled")
        }
        if !isActive(unit) {
            try systemctl("start", unit)
            done.append("started")
        } else if restart {
            try systemctl("restart", unit)
            done.append("restarted")
        }
        guard done.contains(where: { $0 != "enabled" }) else { return done.isEmpty ? nil : done.joined(separator: ", ") }
        guard isActive(unit) else {
            throw BootstrapFailure(.failed, "\(unit) did not become active; see `journalctl --user -u \(unit)`")
        }
        return done.joined(separator: " and ")
    }

    /// A note when the user's services will stop with the last login session (no lingering).
    static func lingerNote() -> String? {
        guard let entry = getpwuid(getuid()), let raw = entry.pointee.pw_name else { return nil }
        let user = String(cString: raw)
        guard !ReleasesLayout.exists("/var/lib/systemd/linger/" + user) else { return nil }
        return "lingering is off for \(user): the units stop when \(user)'s last session ends; run `sudo loginctl enable-linger \(user)` once"
    }
}
