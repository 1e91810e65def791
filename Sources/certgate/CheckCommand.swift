import ArgumentParser
import CertificateKit
import Foundation
import Gateway

/// `certgate check`: validate a configuration without serving, like `nginx -t`.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the configuration's certificates without serving (exit 0 valid, 1 invalid)."
    )

    @Option(name: .long, help: "The configuration file.")
    var config: String = "config/certgate.yaml"

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    @Flag(name: .long, help: "Also reach shared_state's database (exit 1 when it cannot be used).")
    var connect = false

    func run() throws {
        let now = Date()
        var report: CertificateCheckReport
        var inFleet = false
        do throws(ConfigurationErrors) {
            let configuration = try GatewayConfiguration.load(path: config)
            let servingProblems = configuration.problemsForServing(file: config)
            guard servingProblems.isEmpty else { throw ConfigurationErrors(servingProblems) }
            report = CertificateCheckReport.check(configuration, now: now)
            inFleet = configuration.sharedState != nil
            do {
                report.storedSet = try StateStore.storedSetSummary(inDirectory: configuration.resolvedStateDirectory)
            } catch {
                printError("warning: \(error)")
            }
            if connect {
                guard configuration.sharedState != nil else {
                    throw ConfigurationErrors(ConfigurationError(file: config, key: "shared_state", reason: "--connect needs a shared_state section"))
                }
                do {
                    report.sharedState = try SharedStateProbe.check(configuration)
                } catch {
                    report.sharedStateError = error.description
                }
            }
        } catch {
            if json {
                let failure = CertificateCheckReport(
                    valid: false, certificates: [],
                    errors: error.errors.map { CertificateEntryError(entry: "config", field: $0.key.isEmpty ? "file" : $0.key, reason: $0.description) })
                print(try OutputFormat.json(failure))
            } else {
                for problem in error.errors { print("config: \(problem)") }
                print("configuration is invalid: \(error.errors.count) error\(error.errors.count == 1 ? "" : "s")")
            }
            throw ExitCode(1)
        }
        if json {
            print(try OutputFormat.json(report))
        } else {
            print(CheckTable.render(report, inFleet: inFleet), terminator: "")
        }
        if !report.valid || report.sharedStateError != nil { throw ExitCode(1) }
    }
}

enum CheckTable {
    /// - Parameter inFleet: the configuration has `shared_state` (the stored set is then the
    ///   node's local snapshot of the fleet's).
    static func render(_ report: CertificateCheckReport, inFleet: Bool = false) -> String {
        var out = ""
        if !report.certificates.isEmpty {
            let header = ["NAME", "KIND", "DOMAINS", "NOT AFTER", "DAYS LEFT", "STATE", "ISSUER"]
            let rows = report.certificates.map { row in
                [row.name, row.kindLabel, row.domains.joined(separator: ","), OutputFormat.timestamp(row.notAfter),
                 String(row.daysLeft), row.state.rawValue, row.issuer]
            }
            out += OutputFormat.table(header: header, rows: rows)
            for row in report.certificates {
                for warning in row.warnings { out += "\(row.name): warning: \(warning)\n" }
            }
        }
        for error in report.errors { out += "\(error)\n" }
        if report.valid {
            out += "configuration is valid: \(report.certificates.count) certificate\(report.certificates.count == 1 ? "" : "s")\n"
            for (name, issuer) in report.acmeEntries.sorted(by: { $0.key < $1.key }) {
                if report.onDemandEntries[name] != nil {
                    out += "\(name): on demand from \(issuer) by ACME: a certificate for each name its patterns take, at the name's first handshake\n"
                } else {
                    out += "\(name): obtained from \(issuer) by ACME when certgate runs\n"
                }
            }
        } else {
            out += "configuration is invalid: \(report.errors.count) error\(report.errors.count == 1 ? "" : "s")\n"
        }
        if let shared = report.sharedState { out += "shared state: \(shared)\n" }
        if let failure = report.sharedStateError { out += "\(failure)\n" }
        if let stored = report.storedSet, inFleet {
            out += "note: \(stored.path) holds this node's local snapshot of the fleet's set (generation \(stored.generation), \(stored.certificates) certificate\(stored.certificates == 1 ? "" : "s")); "
                + "certgate run serves the fleet's set, and this snapshot while the database cannot be reached\n"
        } else if let stored = report.storedSet {
            out += "note: \(stored.path) holds a stored set (generation \(stored.generation), \(stored.certificates) certificate\(stored.certificates == 1 ? "" : "s"), "
                + "committed \(OutputFormat.timestamp(stored.committedAt)) by \(stored.source)); certgate run serves it instead of the certificates above "
                + "until a reload (SIGHUP, certgate ctl reload) or --reset-state\n"
        }
        return out
    }
}
