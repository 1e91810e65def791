import ArgumentParser
import CertificateKit
import Foundation
import Gateway

/// `certgate inspect FILE`: a certificate file's facts and the chain certgate would serve.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print a certificate file's facts and the chain certgate would serve for it."
    )

    @Argument(help: "A PEM file holding a certificate (and optionally its chain).")
    var file: String

    @Flag(name: .long, help: "Print the facts as JSON.")
    var json = false

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            printError("\(file): cannot read the file")
            throw ExitCode(1)
        }
        let inspection: CertificateInspection
        do {
            inspection = try CertificateInspection.inspect(pem: text, now: Date())
        } catch {
            printError("\(file): \(error.reason)")
            throw ExitCode(1)
        }
        if json {
            print(try OutputFormat.json(inspection))
            return
        }
        for (index, facts) in inspection.certificates.enumerated() {
            print("certificate \(index + 1) of \(inspection.certificates.count)")
            let fields: [(String, String)] = [
                ("subject", facts.subject),
                ("issuer", facts.issuer),
                ("serial", facts.serial),
                ("not before", OutputFormat.timestamp(facts.notBefore)),
                ("not after", OutputFormat.timestamp(facts.notAfter)),
                ("days left", "\(facts.daysLeft) (\(facts.state.rawValue))"),
                ("key", facts.key),
                ("dns names", facts.dnsNames.joined(separator: ", ")),
                ("ip addresses", facts.ipAddresses.joined(separator: ", ")),
                ("ca", facts.isCA ? "yes" : "no"),
                ("subject key id", facts.subjectKeyIdentifier ?? "-"),
                ("authority key id", facts.authorityKeyIdentifier ?? "-"),
                ("sha256", facts.sha256Fingerprint),
            ]
            for (label, value) in fields where !value.isEmpty {
                print("  \(label.padding(toLength: 17, withPad: " ", startingAt: 0))\(value)")
            }
        }
        print("served chain\(inspection.chainCompleted ? " (completed from the bundled Let's Encrypt certificates)" : ""):")
        for (index, subject) in inspection.servedChain.enumerated() {
            print("  \(index): \(subject)")
        }
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
