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

    /// Creates what is missing; returns the names of the entries it created files for.
    @discardableResult
    public static func create(for configuration: GatewayConfiguration, logger: Logger) throws(Failure) -> [String] {
        var created: [String] = []
        for (name, conf) in configuration.certificates.sorted(by: { $0.key < $1.key }) where conf.createIfMissing == true {
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
                let certificatePEM: String
                let keyPEM: String
                if conf.isCA == true {
                    let named = "certgate local CA (\(name))"
                    let authority = try AuthorityCertificate(commonName: CommonNameLimit.fits(named) ? named : "certgate local CA")
                    (certificatePEM, keyPEM) = (authority.certificatePEM, authority.privateKeyPEM)
                } else {
                    let generated = try SelfSignedCertificate(names: names.isEmpty ? ["localhost"] : names)
                    (certificatePEM, keyPEM) = (generated.certificatePEM, generated.privateKeyPEM)
                }
                try writeFile(keyPEM, to: keyFile, mode: 0o600)
                do {
                    try writeFile(certificatePEM, to: certFile, mode: 0o644)
                } catch {
                    try? FileManager.default.removeItem(atPath: keyFile)  // leave no half pair behind
                    throw error
                }
            } catch {
                throw Failure(entry: name, reason: "cannot create \(certFile): \(error)")
            }
            logger.notice(conf.isCA == true ? "created a local CA" : "created a self-signed certificate", metadata: [
                "entry": "\(name)", "certificate": "\(certFile)", "names": "\(names.joined(separator: ","))",
            ])
            created.append(name)
        }
        return created
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
