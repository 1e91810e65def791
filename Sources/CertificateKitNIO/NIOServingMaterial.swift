import CertificateKit
import NIOSSL

/// An entry's certificate chain and key as NIOSSL objects, made once when the entry
/// is built and reused by every handshake (and every later set that keeps the entry).
public final class NIOServingMaterial: Sendable {
    public let certificateChain: [NIOSSLCertificate]
    public let privateKey: NIOSSLPrivateKey
    /// What the certificate callback hands NIOSSL: built here once, not per handshake.
    public let contextOverride: NIOSSLContextConfigurationOverride

    public init(certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        var override = NIOSSLContextConfigurationOverride()
        override.certificateChain = certificateChain.map { .certificate($0) }
        override.privateKey = .privateKey(privateKey)
        self.contextOverride = override
    }

    /// Converts a validated chain (leaf first) and key.
    public convenience init(chain: [ParsedCertificate], key: ParsedPrivateKey) throws {
        let certificates = try chain.map { try NIOSSLCertificate(bytes: $0.der, format: .der) }
        let privateKey = try NIOSSLPrivateKey(bytes: Array(key.pem.utf8), format: .pem)
        self.init(certificateChain: certificates, privateKey: privateKey)
    }

    /// The factory to put in a ``CertificateBuildContext`` so sets carry NIOSSL objects.
    public static let factory: ServingMaterialFactory = { chain, key in
        try NIOServingMaterial(chain: chain, key: key)
    }
}

extension CertificateEntry {
    /// The NIOSSL objects of this entry, when its set was built with ``NIOServingMaterial/factory``.
    public var nioServingMaterial: NIOServingMaterial? {
        servingMaterial as? NIOServingMaterial
    }
}
