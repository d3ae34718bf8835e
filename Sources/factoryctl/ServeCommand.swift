import ArgumentParser
import FactoryGateway
import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

struct ServeCommand: AsyncFactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the HQ HTTP endpoint (publish updates, fleet registry, fleet page).",
        discussion: """
        Routes (every /api/v1/ route needs the header x-ua-ops-token: $UA_OPS_TOKEN):
          POST /api/v1/ops/factory/update
               {"target_factory_id": null|"id", "branch": "main", "force": false,
                "commit": null|"<full sha>", "allow_rewind": false}
          POST /api/v1/ops/factory/control
               {"target_factory_id": "id", "action": "pause"|"resume"}
          GET  /api/v1/ops/factory/jobs/{id}   per-factory results of one mission
          POST /api/v1/factory/registrations   the fleet's registration API
          GET  /api/v1/factory/registrations
          GET  /healthz                        liveness, no auth
          GET  /readyz                         200 when Redis answers, else 503; no auth
          GET  /metrics                        Prometheus text format; needs
                                               Authorization: Bearer $UA_METRICS_TOKEN (404 unset)
          GET  /                               fleet page, no auth (keep it on loopback)

        Every other request needs the token: only the exact paths marked "no auth" are public
        (and /metrics checks its own token), so spellings such as //api/v1/... or
        /api/./v1/... get 401. The fleet page shows ids,
        commits, status and versions, never a token, password or .env value. A connection
        whose request has not arrived within 10 s is closed, a body must arrive within
        5 s (else 408), bodies over 64 KiB get 400, and at most 1,000 connections are served
        at once.

        Publishing routes need FACTORY_ROLE=HEADQUARTERS (else 403). The server refuses \
        to start without UA_OPS_TOKEN unless --insecure-no-auth, and with a token shorter than \
        16 characters (exit 64). An address it cannot listen on (in use, not permitted) exits \
        12; the unit does not restart on 64 or 12. SIGTERM shuts down gracefully. An update or \
        rollout without "commit" is pinned to the branch's tip, read as `publish` reads it \
        (UA_FACTORY_REPO_URL, else the origin of UA_FACTORY_DIR's checkout; 502 when it cannot \
        be read); with UA_MISSION_SIGNING_KEY every mission is signed. With UA_HQ_WEBHOOK_URL, \
        failed results, halted rollouts and stale factories are POSTed there as JSON, once each.

        Example:
          UA_OPS_TOKEN=... FACTORY_ROLE=HEADQUARTERS factoryctl serve --port 8080
          curl -X POST -H "x-ua-ops-token: $UA_OPS_TOKEN" \\
               -H "Content-Type: application/json" -d '{"branch": "main"}' \\
               http://127.0.0.1:8080/api/v1/ops/factory/update
        """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var redis: RedisOptions

    @Option(name: .long, help: ArgumentHelp("Address to listen on.", valueName: "host"))
    var host = "127.0.0.1"

    @Option(name: .long, help: ArgumentHelp("Port to listen on (0 picks a free one).", valueName: "port"))
    var port = 8080

    @Flag(name: .long, help: "Serve /api/v1/ without a token (never on a reachable address).")
    var insecureNoAuth = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
    }

    func run(_ context: CommandContext) async throws {
        let logger = global.logger("factoryctl.serve", context)
        var configuration = try configured { try GatewayConfiguration(environment: context.environment, insecureNoAuth: insecureNoAuth) }
        configuration.host = host
        configuration.port = port
        if insecureNoAuth {
            logger.critical("INSECURE: --insecure-no-auth given: /api/v1/ routes accept requests WITHOUT a token")
        }
        if !configuration.role.isHeadquarters {
            logger.warning("FACTORY_ROLE=\(configuration.role): publishing routes will answer 403")
        }
        let gateway = Gateway(configuration: configuration, bus: try redis.bus(context), logger: logger)
        do {
            try await gateway.run { [host] boundPort in logger.notice("listening on \(host):\(boundPort)") }
        } catch let error as Gateway.ListenError {
            throw CommandFailure(code: .cannotListen, message: "\(error)")
        }
    }
}
