import Foundation

/// The Let's Encrypt / ISRG CA certificates bundled as resources (see
/// `Resources/letsencrypt/README.md`), for completing chains of leaves that arrive
/// without their intermediates.
public enum LetsEncryptBundle {
    /// Every bundled certificate (roots included: they are anchors, never served).
    public static func certificates() throws -> [ParsedCertificate] {
        guard let folder = Bundle.module.url(forResource: "letsencrypt", withExtension: nil),
              let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path),
              names.contains(where: { $0.hasSuffix(".pem") }) else {
            throw PEMMaterialParser.Failure("the bundled Let's Encrypt certificates are missing from the package resources")
        }
        var result: [ParsedCertificate] = []
        for name in names.sorted() where name.hasSuffix(".pem") {
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
            result += try PEMMaterialParser.certificates(fromPEM: text)
        }
        return result
    }

    /// Chain completion over the bundled certificates, built once per process.
    public static let completion: ChainCompletion = {
        // The bundle is part of the package: failing to read it is a packaging defect, and
        // serving leaves without their chains would fail clients silently. Stop loudly.
        do {
            return ChainCompletion(certificates: try certificates())
        } catch {
            fatalError("certgate: the bundled Let's Encrypt certificates cannot be read (a broken install): \(error)")
        }
    }()
}
