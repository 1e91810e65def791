import ArgumentParser
import CertificateKit
import Foundation
import Gateway

/// `certgate ca init`: make a local CA for issuer (`is_ca`) entries.
struct AuthorityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca",
        abstract: "Manage the local CA that signs leaves on the fly.",
        subcommands: [Initialize.self]
    )

    struct Initialize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Make a local CA: OUT/ca.pem and OUT/ca.key (P-256, key 0600)."
        )

        @Option(name: .long, help: "The folder to write ca.pem and ca.key to.")
        var out: String = "state"

        @Option(name: .long, help: "The CA's common name.")
        var name: String = "certgate local CA"

        @Option(name: .long, help: "Days the CA is valid.")
        var days: Int = 3_650

        func run() throws {
            guard (1...9_125).contains(days) else { throw ValidationError("--days must be 1 to 9125 (25 years), not \(days)") }
            guard !name.unicodeScalars.contains(where: { [.control, .format].contains($0.properties.generalCategory) }) else {
                throw ValidationError("--name may not hold control or format characters")
            }
            guard CommonNameLimit.fits(name) else {
                throw ValidationError("--name must be 1 to \(CommonNameLimit.maximumLength) characters (RFC 5280's bound on a commonName), not \(name.count)")
            }
            let certificateFile = (out as NSString).appendingPathComponent("ca.pem")
            let keyFile = (out as NSString).appendingPathComponent("ca.key")
            for file in [certificateFile, keyFile] where FileManager.default.fileExists(atPath: file) {
                printError("\(file) exists; refusing to overwrite a CA (move it away first)")
                throw ExitCode(1)
            }
            let authority = try AuthorityCertificate(commonName: name, validityDays: days)
            try MissingCertificateFiles.writeFile(authority.privateKeyPEM, to: keyFile, mode: 0o600)
            try MissingCertificateFiles.writeFile(authority.certificatePEM, to: certificateFile, mode: 0o644)
            print("wrote \(certificateFile) and \(keyFile)")
        }
    }
}
