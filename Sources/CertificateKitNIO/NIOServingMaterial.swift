import CertificateKit
import NIOSSL
import Synchronization

/// An entry's certificate chain and key in the form NIOSSL's certificate callback takes.
///
/// The chain's DER and the key's PEM text are kept; the NIOSSL objects (BoringSSL's
/// `X509` and `EVP_PKEY`, about 4 KiB an entry) are made when a handshake first needs
/// them and kept from then on, so an entry no client asks for costs its bytes only. They
/// are also made once when the material is created — BoringSSL must accept the chain and
/// key, or the update that brings them is refused — and, for a set entry, dropped again
/// (``factory``); a certificate served at once keeps them (``eager(chain:key:)``, and
/// ``issuedLeafFactory()`` for the leaves of local CAs).
/// Making them costs some tens of microseconds on the event loop, once per entry.
public final class NIOServingMaterial: Sendable {
    private struct Built: @unchecked Sendable {
        // NIOSSL's objects are immutable once made and safe to share between threads.
        let certificates: [NIOSSLCertificate]
        let override: NIOSSLContextConfigurationOverride
    }

    private let chainDER: [[UInt8]]
    private let keyPEM: [UInt8]
    private let built: Mutex<Built?>

    /// - Parameter check: make the NIOSSL objects now (BoringSSL must accept them); false
    ///   for material BoringSSL accepted when it was committed and that has not changed.
    private init(chainDER: [[UInt8]], keyPEM: [UInt8], keepBuilt: Bool, check: Bool = true) throws {
        self.chainDER = chainDER
        self.keyPEM = keyPEM
        let made = check || keepBuilt ? try Self.build(chainDER: chainDER, keyPEM: keyPEM) : nil
        self.built = Mutex(keepBuilt ? made : nil)
    }

    /// An issued leaf's material: its objects made now and kept; the chain after the leaf
    /// taken from `shared`; no bytes kept to make them again from.
    private init(issuedChain chainDER: [[UInt8]], keyPEM: [UInt8], shared: SharedChainCertificates) throws {
        guard let leafDER = chainDER.first else { throw NIOSSLError.failedToLoadCertificate }
        var certificates = [try NIOSSLCertificate(bytes: leafDER, format: .der)]
        for der in chainDER.dropFirst() { certificates.append(try shared.certificate(der)) }
        let made = Self.built(certificates: certificates, privateKey: try NIOSSLPrivateKey(bytes: keyPEM, format: .pem))
        self.chainDER = []
        self.keyPEM = []
        self.built = Mutex(made)
    }

    /// For an issued leaf, served right away: the NIOSSL objects are kept from the start.
    public static func eager(chain: [ParsedCertificate], key: ParsedPrivateKey) throws -> NIOServingMaterial {
        try NIOServingMaterial(chainDER: chain.map(\.der), keyPEM: Array(key.pem.utf8), keepBuilt: true)
    }

    /// What the certificate callback hands NIOSSL, made at the first call and kept.
    /// - Throws: NIOSSL's error if BoringSSL refuses the material now (it accepted it when
    ///   the material was created).
    public func contextOverride() throws -> NIOSSLContextConfigurationOverride {
        try builtObjects().override
    }

    /// The chain as NIOSSL certificates, leaf first.
    public func certificateChain() throws -> [NIOSSLCertificate] {
        try builtObjects().certificates
    }

    /// Whether the NIOSSL objects are currently made.
    public var isBuilt: Bool { built.withLock { $0 != nil } }

    private func builtObjects() throws -> Built {
        try built.withLock { built in
            if let built { return built }
            let made = try Self.build(chainDER: chainDER, keyPEM: keyPEM)
            built = made
            return made
        }
    }

    private static func build(chainDER: [[UInt8]], keyPEM: [UInt8]) throws -> Built {
        let certificates = try chainDER.map { try NIOSSLCertificate(bytes: $0, format: .der) }
        return built(certificates: certificates, privateKey: try NIOSSLPrivateKey(bytes: keyPEM, format: .pem))
    }

    private static func built(certificates: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey) -> Built {
        var override = NIOSSLContextConfigurationOverride()
        override.certificateChain = certificates.map { .certificate($0) }
        override.privateKey = .privateKey(privateKey)
        return Built(certificates: certificates, override: override)
    }

    /// The factory to put in a ``CertificateBuildContext`` so sets carry NIOSSL material.
    /// Material already accepted (``ServingMaterialInput/alreadyAccepted``) is not built
    /// until its first handshake.
    public static let factory: ServingMaterialFactory = { input in
        try NIOServingMaterial(
            chainDER: input.chain.map(\.der), keyPEM: Array(input.keyPEM.utf8), keepBuilt: false, check: !input.alreadyAccepted)
    }

    /// A factory for the leaves of local CAs (``IssuedCertificateCache``): each leaf's
    /// objects are made at once and kept, and the certificates after the leaf — its CA's,
    /// the same for thousands of leaves — are made once and shared by every leaf this
    /// factory makes (each would otherwise hold its own parsed copy of the CA's certificate,
    /// 2–3 KiB). No DER or PEM is kept beside the objects.
    public static func issuedLeafFactory() -> ServingMaterialFactory {
        let shared = SharedChainCertificates()
        return { input in
            try NIOServingMaterial(issuedChain: input.chain.map(\.der), keyPEM: Array(input.keyPEM.utf8), shared: shared)
        }
    }
}

/// The NIOSSL certificates that follow issued leaves, by DER, made once (at most
/// ``limit`` of them: a few local CAs and their chains).
private final class SharedChainCertificates: Sendable {
    private struct Shared: @unchecked Sendable {
        // NIOSSL's certificates are immutable once made and safe to share between threads.
        let certificate: NIOSSLCertificate
    }

    static let limit = 64
    private let made = Mutex<[[UInt8]: Shared]>([:])

    func certificate(_ der: [UInt8]) throws -> NIOSSLCertificate {
        if let known = made.withLock({ $0[der] }) { return known.certificate }
        let certificate = try NIOSSLCertificate(bytes: der, format: .der)
        made.withLock { made in
            if made.count < Self.limit { made[der] = Shared(certificate: certificate) }
        }
        return certificate
    }
}

extension CertificateEntry {
    /// The NIOSSL material of this entry, when its set was built with ``NIOServingMaterial/factory``.
    public var nioServingMaterial: NIOServingMaterial? {
        servingMaterial as? NIOServingMaterial
    }
}
