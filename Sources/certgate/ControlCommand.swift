#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CertificateKit
import ControlProtocol
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Gateway
import SwiftProtobuf

/// `certgate ctl …`: the control plane from the command line, over the Unix socket.
struct ControlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Drive a running certgate over its control socket.",
        subcommands: [List.self, Show.self, Status.self, Apply.self, Upsert.self, Delete.self, Reload.self, Renew.self, Watch.self]
    )

    /// `--socket`, `--config` and `--json` may come before the subcommand (`ctl --socket S list`)
    /// or after it; ArgumentParser hands them to the subcommand's own group.
    @OptionGroup var connection: Connection

    struct Connection: ParsableArguments {
        @Option(name: .long, help: "The control socket (default: control.socket of --config).")
        var socket: String?

        @Option(name: .long, help: "The configuration file naming the socket.")
        var config: String = "config/certgate.yaml"

        @Flag(name: .long, help: "Print JSON.")
        var json = false

        /// The socket: `--socket`, or `control.socket` of `--config` — read even from a file
        /// that is otherwise invalid (the gateway then says what is wrong with it, e.g. on
        /// `reload`). A file with no socket is a usage error; one that cannot be read at all
        /// exits 1 with its reasons.
        func socketPath() throws -> String {
            if let socket { return socket }
            if let socket = GatewayConfiguration.controlSocket(inFileAt: config) { return socket }
            do {
                _ = try GatewayConfiguration.load(path: config)
            } catch {
                for problem in error.errors { printError("\(problem)") }
                throw ExitCode(1)
            }
            throw ValidationError("\(config) has no control.socket; pass --socket")
        }

        typealias Client = Certgate_Control_V1_CertificateControl.Client<HTTP2ClientTransport.Posix>

        /// Runs `body` with a client; a failed RPC prints the server's reasons and exits 1. A
        /// socket nobody listens on is said in the system's words (not the transport's).
        func run<T: Sendable>(_ body: (Client) async throws -> T) async throws -> T {
            let path = try socketPath()
            if let problem = ControlCommand.unreachable(socket: path) {
                printError("cannot reach the gateway at \(path): \(problem)")
                throw ExitCode(1)
            }
            let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: path), transportSecurity: .plaintext)
            do {
                return try await withGRPCClient(transport: transport) { client in try await body(Client(wrapping: client)) }
            } catch let error as RPCError {
                printError("\(error.code): \(error.message)")
                throw ExitCode(1)
            }
        }

        func print(_ message: some SwiftProtobuf.Message) throws {
            var options = JSONEncodingOptions()
            options.preserveProtoFieldNames = true
            Swift.print(try message.jsonString(options: options))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The live set (never keys).")
        @OptionGroup var connection: Connection
        @Flag(name: .long, help: "List the certificates obtained on demand instead, by name.")
        var onDemand = false

        func run() async throws {
            let request = Certgate_Control_V1_ListCertificatesRequest.with { $0.onDemand = onDemand }
            let response = try await connection.run { try await $0.listCertificates(request) }
            if connection.json {
                if onDemand {
                    return try connection.print(Certgate_Control_V1_ListCertificatesResponse.with {
                        $0.generation = response.generation
                        $0.onDemand = response.onDemand
                    })
                }
                return try connection.print(response)
            }
            if onDemand { return Self.printOnDemand(response.onDemand) }
            let rows = response.certificates.map { certificate in
                // An acme entry with no certificate (yet, or on demand: one per name) has only its
                // name, domains and ACME state.
                guard !certificate.kind.isEmpty else {
                    return [certificate.name, certificate.onDemand ? "on-demand" : "acme", certificate.domains.joined(separator: ","), "-", "-",
                            certificate.onDemand ? "-" : certificate.acmeStatus, "-"]
                }
                return [certificate.name, (certificate.acme.isEmpty ? certificate.kind : "acme") + (certificate.isDefault ? "+default" : ""),
                        certificate.domains.joined(separator: ","), OutputFormat.timestamp(certificate.notAfter.date), String(certificate.daysLeft),
                        certificate.state, certificate.issuer]
            }
            Swift.print(OutputFormat.table(header: ["NAME", "KIND", "DOMAINS", "NOT AFTER", "DAYS LEFT", "STATE", "ISSUER"], rows: rows), terminator: "")
            // As `certgate check` prints them.
            for certificate in response.certificates {
                for warning in certificate.warnings { Swift.print("\(certificate.name): warning: \(warning)") }
            }
            for certificate in response.certificates where !certificate.acme.isEmpty {
                if certificate.onDemand {
                    Swift.print("\(certificate.name): on demand from acme \(certificate.acme), \(certificate.ask.isEmpty ? "no ask endpoint" : "ask \(certificate.ask)"); its certificates: ctl list --on-demand")
                    continue
                }
                var line = "\(certificate.name): acme \(certificate.acme), \(certificate.acmeStatus)"
                if certificate.hasRenewAt { line += ", renews at \(OutputFormat.timestamp(certificate.renewAt.date))" }
                if certificate.hasNextAttempt { line += ", next attempt \(OutputFormat.timestamp(certificate.nextAttempt.date))" }
                if !certificate.lastError.isEmpty { line += "; last error: \(certificate.lastError)" }
                Swift.print(line)
            }
            let served = response.certificates.filter { !$0.kind.isEmpty }.count
            let onDemandEntries = response.certificates.filter(\.onDemand).count
            let pending = response.certificates.count - served - onDemandEntries
            var summary = "generation \(response.generation), \(served) certificates"
            if pending > 0 { summary += ", \(pending) acme entries waiting for their first certificate" }
            if onDemandEntries > 0 { summary += ", \(onDemandEntries) on-demand entries" }
            Swift.print(summary)
        }

        private static func printOnDemand(_ certificates: [Certgate_Control_V1_OnDemandCertificate]) {
            let rows = certificates.map { certificate in
                [certificate.name, certificate.entry.isEmpty ? "(none)" : certificate.entry, certificate.acme, OutputFormat.timestamp(certificate.notAfter.date), String(certificate.daysLeft),
                 OutputFormat.timestamp(certificate.lastHandshake.date), OutputFormat.timestamp(certificate.renewAt.date), certificate.cached ? "yes" : "no"]
            }
            Swift.print(OutputFormat.table(
                header: ["NAME", "ENTRY", "ACME", "NOT AFTER", "DAYS LEFT", "LAST HANDSHAKE", "RENEWS AT", "IN MEMORY"], rows: rows), terminator: "")
            for certificate in certificates where !certificate.lastError.isEmpty {
                Swift.print("\(certificate.name): last renewal failed: \(certificate.lastError)")
            }
            if certificates.contains(where: \.entry.isEmpty) {
                Swift.print("(none): no on-demand entry takes the name any more; not served, removed once expired")
            }
            Swift.print("\(certificates.count) certificates obtained on demand")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One entry in full (chain, names, fingerprint), never the key.")
        @OptionGroup var connection: Connection
        @Argument var name: String

        func run() async throws {
            let response = try await connection.run { try await $0.listCertificates(Certgate_Control_V1_ListCertificatesRequest()) }
            guard let certificate = response.certificates.first(where: { $0.name == name }) else {
                printError("no entry named \(QuotedValue.quote(name, limit: 253))")
                throw ExitCode(1)
            }
            if connection.json { return try connection.print(certificate) }
            guard !certificate.kind.isEmpty else {
                // An acme entry with no certificate of its own: pending, or on demand.
                Swift.print("""
                    name         \(certificate.name)
                    kind         \(certificate.onDemand ? "on-demand acme entry" : "acme entry with no certificate yet")
                    \(certificate.onDemand ? "patterns" : "domains ")     \(certificate.domains.joined(separator: ", "))
                    acme         \(certificate.acme)
                    """)
                if certificate.onDemand {
                    Swift.print("ask          \(certificate.ask.isEmpty ? "(none)" : certificate.ask)")
                    Swift.print("certificates ctl list --on-demand")
                } else {
                    Swift.print("status       \(certificate.acmeStatus)")
                    if !certificate.lastError.isEmpty { Swift.print("last error   \(certificate.lastError)") }
                    if certificate.hasNextAttempt { Swift.print("next attempt \(OutputFormat.timestamp(certificate.nextAttempt.date))") }
                }
                return
            }
            Swift.print("""
                name         \(certificate.name)
                kind         \(certificate.kind)\(certificate.isDefault ? " (default)" : "")
                domains      \(certificate.domains.joined(separator: ", "))
                not before   \(OutputFormat.timestamp(certificate.notBefore.date))
                not after    \(OutputFormat.timestamp(certificate.notAfter.date)) (\(certificate.daysLeft) days, \(certificate.state))
                issuer       \(certificate.issuer)
                sha256       \(certificate.sha256Fingerprint)
                chain        \(certificate.chainSubjects.joined(separator: "\n             "))
                """)
            for warning in certificate.warnings { Swift.print("warning      \(warning)") }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Generation, counts, listeners, the last update.")
        @OptionGroup var connection: Connection

        func run() async throws {
            let status = try await connection.run { try await $0.getStatus(Certgate_Control_V1_GetStatusRequest()) }
            if connection.json { return try connection.print(status) }
            Swift.print("generation   \(status.generation)")
            Swift.print("certificates \(status.certificates) (\(status.issuedCached) issued leaves cached)")
            Swift.print("last update  \(OutputFormat.timestamp(status.lastUpdate.date)) (\(status.lastUpdateSource))")
            for listener in status.listeners { Swift.print("listener     \(listener.name) \(listener.address)") }
            if status.hasSharedState {
                let shared = status.sharedState
                let behind = shared.fleetGeneration > status.generation ? shared.fleetGeneration - status.generation : 0
                Swift.print("node         \(shared.node)")
                if shared.fleetGenerationKnown {
                    Swift.print("fleet        generation \(shared.fleetGeneration); this node serves \(status.generation)\(behind > 0 ? " (\(behind) behind)" : "")")
                } else {
                    Swift.print("fleet        generation unknown (the database was not reached since the start); this node serves \(status.generation)")
                }
                Swift.print("database     \(shared.connected ? "connected" : "unreachable: \(shared.reason)")")
            }
            let onDemand = status.onDemand
            if onDemand.entries > 0 || onDemand.stored > 0 {
                Swift.print("on demand    \(onDemand.entries) entries; \(onDemand.stored) certificates stored, \(onDemand.cached) in memory; \(onDemand.ordering) names being obtained; \(onDemand.refusedNames) names refused for now")
                Swift.print("limits       handshake_wait \(onDemand.handshakeWait), max_concurrent \(onDemand.maxConcurrent), orders_per_minute \(onDemand.ordersPerMinute) (burst \(onDemand.burst)), per_client_per_hour \(onDemand.perClientPerHour), max_certificates \(onDemand.maxCertificates), idle_timeout \(onDemand.idleTimeout), ask_timeout \(onDemand.askTimeout), ask_cache \(onDemand.askCache), failure_backoff \(onDemand.failureBackoff)")
            }
        }
    }

    /// Options shared by apply and upsert.
    struct UpdateOptions: ParsableArguments {
        @Flag(name: .long, help: "Validate and report; change nothing.")
        var dryRun = false
        @Option(name: .long, help: "Apply only if the current generation is this one.")
        var expectGeneration: UInt64?
        @Flag(name: .long, help: "Apply the valid entries; invalid ones keep their previous version.")
        var keepLastGood = false

        var policy: Certgate_Control_V1_UpdatePolicy { keepLastGood ? .keepLastGood : .reject }

        func fill(_ request: inout Certgate_Control_V1_ApplyCertificateSetRequest) {
            request.dryRun = dryRun
            request.policy = policy
            if let expectGeneration { request.expectedGeneration = expectGeneration }
        }

        func fill(_ request: inout Certgate_Control_V1_UpdateCertificatesRequest) {
            request.dryRun = dryRun
            request.policy = policy
            if let expectGeneration { request.expectedGeneration = expectGeneration }
        }
    }

    static func entries(fromYAML path: String) throws -> [Certgate_Control_V1_CertificateEntry] {
        let configuration: GatewayConfiguration
        do {
            // The CAs of acme entries are the gateway's (it checks them), not this file's.
            configuration = try GatewayConfiguration.load(path: path, acmeIssuersElsewhere: true)
        } catch {
            // A file that does not load is a failure (exit 1), not a usage error (64).
            for problem in error.errors { printError("\(problem)") }
            throw ExitCode(1)
        }
        return try configuration.certificates.sorted(by: { $0.key < $1.key }).map { name, conf in
            // Files are read here: the gateway may not see this machine's paths.
            let content = try { () throws -> (String, String?) in
                let cert = try conf.tlsCert.map { try MaterialSource($0).read(baseDirectory: configuration.baseDirectory, entry: name, field: "tls_cert") }
                let key = try conf.tlsKey.map { try MaterialSource($0).read(baseDirectory: configuration.baseDirectory, entry: name, field: "tls_key") }
                return (cert ?? "", key)
            }()
            return Certgate_Control_V1_CertificateEntry(name: name, conf: conf, certificatePEM: content.0, keyPEM: content.1)
        }
    }

    static func report(_ result: Certgate_Control_V1_UpdateResult, connection: Connection) throws {
        if connection.json { return try connection.print(result) }
        Swift.print("\(result.dryRun ? "dry run: would apply" : "applied") generation \(result.generation): "
            + "\(result.added.count) added, \(result.changed.count) changed, \(result.removed.count) removed")
        for (label, names) in [("added", result.added), ("changed", result.changed), ("removed", result.removed)] where !names.isEmpty {
            Swift.print("  \(label): \(names.joined(separator: ", "))")
        }
        for error in result.errors { Swift.print("kept previous version: \(error.entry): \(error.field): \(error.reason)") }
        for warning in result.warnings {
            let place = [warning.entry, warning.field].filter { !$0.isEmpty }.joined(separator: ": ")
            Swift.print("warning: \(place.isEmpty ? "" : place + ": ")\(warning.reason)")
        }
    }

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replace the whole set with the certificates: of a YAML file.")
        @OptionGroup var connection: Connection
        @OptionGroup var options: UpdateOptions
        @Argument var file: String

        func run() async throws {
            let entries = try ControlCommand.entries(fromYAML: file)
            let result = try await connection.run { client in
                try await client.applyCertificateSet(.with {
                    $0.entries = entries
                    options.fill(&$0)
                })
            }
            try ControlCommand.report(result, connection: connection)
        }
    }

    struct Upsert: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or replace the certificates: of YAML files, as one batch.")
        @OptionGroup var connection: Connection
        @OptionGroup var options: UpdateOptions
        @Argument var files: [String]

        func run() async throws {
            let entries = try files.flatMap { try ControlCommand.entries(fromYAML: $0) }
            let result = try await connection.run { client in
                try await client.updateCertificates(.with {
                    $0.upsert = entries
                    options.fill(&$0)
                })
            }
            try ControlCommand.report(result, connection: connection)
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove entries by name, as one batch.")
        @OptionGroup var connection: Connection
        @OptionGroup var options: UpdateOptions
        @Argument var names: [String]

        func run() async throws {
            let result = try await connection.run { client in
                try await client.updateCertificates(.with {
                    $0.delete = names
                    options.fill(&$0)
                })
            }
            try ControlCommand.report(result, connection: connection)
        }
    }

    struct Renew: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Order a new certificate for an acme entry now; waits until it is served (exit 1 with the CA's reason if the order fails).")
        @OptionGroup var connection: Connection
        @Argument var name: String

        func run() async throws {
            let response = try await connection.run { client in
                try await client.renewCertificate(.with { $0.name = name })
            }
            if connection.json { return try connection.print(response) }
            var line = "renewed \(response.name): generation \(response.generation), not after \(OutputFormat.timestamp(response.notAfter.date))"
            if response.hasRenewAt { line += ", renews at \(OutputFormat.timestamp(response.renewAt.date))" }
            Swift.print(line)
        }
    }

    struct Reload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Re-apply the gateway's YAML configuration.")
        @OptionGroup var connection: Connection

        func run() async throws {
            let result = try await connection.run { try await $0.reloadConfig(Certgate_Control_V1_ReloadConfigRequest()) }
            try ControlCommand.report(result, connection: connection)
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print set changes, validity changes and ACME results as they happen.")
        @OptionGroup var connection: Connection

        func run() async throws {
            let json = connection.json
            do {
                try await watch(json: json)
            } catch is StreamEnded {
                printError("the gateway closed the watch (it stopped or restarted)")
                throw ExitCode(1)
            }
        }

        /// The stream ended from the gateway's side once it had started.
        private struct StreamEnded: Error {}

        private func watch(json: Bool) async throws {
            try await connection.run { client in
                try await client.watchEvents(Certgate_Control_V1_WatchEventsRequest()) { response in
                  do {
                    for try await event in response.messages {
                        if json {
                            var options = JSONEncodingOptions()
                            options.preserveProtoFieldNames = true
                            emitLine(try event.jsonString(options: options))
                        } else {
                            switch event.kind {
                            case .setChanged(let change):
                                emitLine("\(OutputFormat.timestamp(event.time.date)) generation \(change.generation) (\(change.source)\(change.node.isEmpty ? "" : " on \(change.node)")): "
                                    + "+\(change.added.count) ~\(change.changed.count) -\(change.removed.count)")
                            case .validityChanged(let change):
                                emitLine("\(OutputFormat.timestamp(event.time.date)) \(change.entry): \(change.previousState.isEmpty ? "-" : change.previousState) → \(change.state) (\(change.daysLeft) days)")
                            case .acmeChanged(let change):
                                emitLine("\(OutputFormat.timestamp(event.time.date)) \(change.entry): acme \(change.acme) " + Self.describe(change))
                            case nil:
                                break
                            }
                        }
                    }
                  } catch let error as RPCError where [.unavailable, .cancelled, .unknown].contains(error.code) {
                    // The transport's words ("RST_STREAM …") are not the operator's.
                    throw StreamEnded()
                  }
                }
            }
        }

        /// `obtained (not after …, renew at …)`, `renewed (…)` or `failed: REASON (n in a row; next attempt …)`.
        static func describe(_ change: Certgate_Control_V1_AcmeChanged) -> String {
            if change.result == "failed" {
                let next = change.hasNextAttempt ? "; next attempt \(OutputFormat.timestamp(change.nextAttempt.date))" : ""
                return "failed: \(change.reason) (\(change.failures) in a row\(next))"
            }
            var dates: [String] = []
            if change.hasNotAfter { dates.append("not after \(OutputFormat.timestamp(change.notAfter.date))") }
            if change.hasRenewAt { dates.append("renew at \(OutputFormat.timestamp(change.renewAt.date))") }
            return change.result + (dates.isEmpty ? "" : " (\(dates.joined(separator: ", ")))")
        }
    }
}

/// Writes one line straight to standard output (unbuffered, for streams read by pipes).
func emitLine(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

extension ControlCommand {
    /// Why nothing answers on the Unix socket at `path` (nil: something listens), in the
    /// system's words.
    static func unreachable(socket path: String) -> String? {
        let descriptor = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return "the socket path is too long" }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected != 0 else { return nil }
        let code = errno
        switch code {
        case ENOENT: return "no such socket (is certgate running with this control.socket?)"
        case ECONNREFUSED: return "nothing listens on the socket (certgate stopped?)"
        case EACCES: return "permission denied (the socket's mode is control.mode)"
        default: return "\(String(cString: strerror(code))) (errno \(code))"
        }
    }
}
