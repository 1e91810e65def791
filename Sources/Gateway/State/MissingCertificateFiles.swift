import CertificateKit
import Foundation
import Logging

/// Creates the files of `create_if_missing` entries at start (a self-signed certificate
/// for the entry's domains), so a fresh checkout serves with no file from outside.
public enum MissingCertificateFiles {
    public struct Failure: Error, CustomStringConvertible {
        public let entry: String
        public let reason: String
        public var description: String { "\(entry): create_if_missing: \(reason)" }
    }

    /// What `create` would write for one entry.
    struct Pending {
        let name: String
        let certFile: String
        let keyFile: String
        let certificatePEM: String
        let keyPEM: String
        let names: [String]
        let isAuthority: Bool
    }

    /// The material of every `create_if_missing` entry whose files do not exist yet, made
    /// in memory; nothing is written.
    static func pending(for configuration: GatewayConfiguration) throws(Failure) -> [Pending] {
        var pending: [Pending] = []
        let creating = configuration.certificates.filter { $0.value.createIfMissing == true }
        for (name, conf) in creating.sorted(by: { $0.key < $1.key }) {
            guard let certValue = conf.tlsCert, let keyValue = conf.tlsKey,
                  case .file(let certPath) = MaterialSource(certValue), case .file(let keyPath) = MaterialSource(keyValue) else {
                throw Failure(entry: name, reason: "tls_cert and tls_key must both be file paths")
            }
            let certFile = MaterialSource.resolve(path: certPath, baseDirectory: configuration.baseDirectory)
            let keyFile = MaterialSource.resolve(path: keyPath, baseDirectory: configuration.baseDirectory)
            let manager = FileManager.default
            switch (manager.fileExists(atPath: certFile), manager.fileExists(atPath: keyFile)) {
            case (true, true):
                continue
            case (true, false), (false, true):
                throw Failure(entry: name, reason: "only one of \(certFile) and \(keyFile) exists; remove it or restore the other")
            case (false, false):
                break
            }
            let names = conf.domains?.items.filter { $0 != "*" } ?? []
            do {
                if conf.isCA == true {
                    let named = "certgate local CA (\(name))"
                    let authority = try AuthorityCertificate(commonName: CommonNameLimit.fits(named) ? named : "certgate local CA")
                    pending.append(Pending(name: name, certFile: certFile, keyFile: keyFile, certificatePEM: authority.certificatePEM,
                                           keyPEM: authority.privateKeyPEM, names: names, isAuthority: true))
                } else {
                    let generated = try SelfSignedCertificate(names: names.isEmpty ? ["localhost"] : names)
                    pending.append(Pending(name: name, certFile: certFile, keyFile: keyFile, certificatePEM: generated.certificatePEM,
                                           keyPEM: generated.privateKeyPEM, names: names, isAuthority: false))
                }
            } catch {
                throw Failure(entry: name, reason: "cannot make a certificate for \(names.isEmpty ? "localhost" : names.joined(separator: ","))")
            }
        }
        return pending
    }

    /// The configuration's `certificates:` as `certgate run` reads them once it has created
    /// the missing files: what `certgate check` validates, so both judge the same set.
    public static func asRunWillRead(_ configuration: GatewayConfiguration) throws(Failure) -> [String: CertificateConf] {
        var certificates = configuration.certificates
        for item in try pending(for: configuration) {
            certificates[item.name]?.tlsCert = item.certificatePEM
            certificates[item.name]?.tlsKey = item.keyPEM
        }
        return certificates
    }

    /// Creates what is missing; returns the names of the entries it created files for.
    @discardableResult
    public static func create(for configuration: GatewayConfiguration, logger: Logger) throws(Failure) -> [String] {
        var created: [String] = []
        for item in try pending(for: configuration) {
            do {
                try writeFile(item.keyPEM, to: item.keyFile, mode: 0o600)
                do {
                    try writeFile(item.certificatePEM, to: item.certFile, mode: 0o644)
                } catch {
                    try? FileManager.default.removeItem(atPath: item.keyFile)  // leave no half pair behind
                    throw error
                }
            } catch {
                throw Failure(entry: item.name, reason: "cannot create \(item.certFile) (\(describe(error)))")
            }
            logger.notice(item.isAuthority ? "created a local CA" : "created a self-signed certificate", metadata: [
                "entry": "\(item.name)", "certificate": "\(item.certFile)", "names": "\(item.names.joined(separator: ","))",
            ])
            created.append(item.name)
        }
        return created
    }

    private static func describe(_ error: any Error) -> String {
        if let cocoa = error as? CocoaError, cocoa.code == .fileWriteNoPermission { return "permission denied" }
        return "the file or its folder cannot be written"
    }

    /// Writes `text` with `mode`, creating the folder (0700) if needed; never world-readable in between.
    public static func writeFile(_ text: String, to path: String, mode: Int) throws {
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if !FileManager.default.fileExists(atPath: folder) {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
    }
}
