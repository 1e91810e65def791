import CertificateKit
import NIOSSL
import SwiftASN1
import Synchronization

/// An entry's certificate chain and key in the form NIOSSL's certificate callback takes.
///
/// The chain's DER and the key (PKCS#8 as DER, other forms as PEM) are kept; the NIOSSL
/// objects (BoringSSL's `X509` and `EVP_PKEY`, about 4–5 KiB an entry) are made when a
/// handshake first needs them, so an entry no client asks for costs its bytes only. They
/// are also made once when the material is created — BoringSSL must accept the chain and
/// key, or the update that brings them is refused. A set entry's objects are then dropped until its first
/// handshake and kept from then on (``factory``); a certificate served at once keeps them
/// (``eager(chain:key:)``); the leaves of local CAs keep them while they are among the
/// most recently made or served (``issuedLeafFactory(keepingObjectsFor:)``).
/// Making them costs some microseconds on the event loop (about 11 µs for a P-256 leaf).
public final class NIOServingMaterial: Sendable {
    private struct Built: @unchecked Sendable {
        // NIOSSL's objects are immutable once made and safe to share between threads.
        let certificates: [NIOSSLCertificate]
        let override: NIOSSLContextConfigurationOverride
    }

    /// What the objects are made again from.
    private enum Source: @unchecked Sendable {
        // The NIOSSL certificates after an issued leaf are immutable and shared between threads.
        /// A set entry or an on-demand certificate: the whole chain's DER, the key.
        case entry(chainDER: [[UInt8]], key: KeyBytes)
        /// An issued leaf: its DER and its key; the chain after it is its CA's, made once
        /// for every leaf of the factory; `recent` decides whose objects are kept.
        case issued(leafDER: [UInt8], key: KeyBytes, issuerChain: [NIOSSLCertificate], recent: RecentlyServedObjects)
    }

    /// A private key as NIOSSL loads it: PKCS#8 as its DER (no base64 to decode); SEC1 and
    /// PKCS#1 as PEM text, whose label names the form (BoringSSL's DER loader guesses them by
    /// counting fields, and a SEC1 key without its optional fields would read as RSA).
    private struct KeyBytes {
        let bytes: [UInt8]
        let format: NIOSSLSerializationFormats

        init(_ block: PEMDocument) {
            if block.discriminator == "PRIVATE KEY" {
                bytes = block.derBytes
                format = .der
            } else {
                bytes = Array(block.pemString.utf8)
                format = .pem
            }
        }

        func load() throws -> NIOSSLPrivateKey {
            try NIOSSLPrivateKey(bytes: bytes, format: format)
        }
    }

    private let source: Source
    private let built: Mutex<Built?>

    /// - Parameter check: make the NIOSSL objects now (BoringSSL must accept them); false
    ///   for material BoringSSL accepted when it was committed and that has not changed.
    private init(chainDER: [[UInt8]], key: PEMDocument, keepBuilt: Bool, check: Bool = true) throws {
        source = .entry(chainDER: chainDER, key: KeyBytes(key))
        let made = check || keepBuilt ? try Self.build(source) : nil
        built = Mutex(keepBuilt ? made : nil)
    }

    /// An issued leaf's material: its objects made now (BoringSSL must accept them) and
    /// counted as just served.
    private init(issuedChain chainDER: [[UInt8]], key: PEMDocument, shared: SharedChainCertificates, recent: RecentlyServedObjects) throws {
        guard let leafDER = chainDER.first else { throw NIOSSLError.failedToLoadCertificate }
        let issuerChain = try chainDER.dropFirst().map { try shared.certificate($0) }
        source = .issued(leafDER: leafDER, key: KeyBytes(key), issuerChain: issuerChain, recent: recent)
        built = Mutex(try Self.build(source))
        recent.served(self)
    }

    deinit {
        if case .issued(_, _, _, let recent) = source { recent.forget(self) }
    }

    /// For an issued leaf, served right away: the NIOSSL objects are kept from the start.
    public static func eager(chain: [ParsedCertificate], key: ParsedPrivateKey) throws -> NIOServingMaterial {
        try NIOServingMaterial(chainDER: chain.map(\.der), key: key.block, keepBuilt: true)
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
        let objects = try built.withLock { built in
            if let built { return built }
            let made = try Self.build(source)
            built = made
            return made
        }
        if case .issued(_, _, _, let recent) = source { recent.served(self) }
        return objects
    }

    /// Lets the objects go (they are made again at the next handshake); a handshake that
    /// already has them keeps its own references.
    fileprivate func dropObjects() {
        // The objects are released when the returned value goes, outside the lock.
        _ = built.withLock { built in
            defer { built = nil }
            return built
        }
    }

    private static func build(_ source: Source) throws -> Built {
        switch source {
        case .entry(let chainDER, let key):
            let certificates = try chainDER.map { try NIOSSLCertificate(bytes: $0, format: .der) }
            return built(certificates: certificates, privateKey: try key.load())
        case .issued(let leafDER, let key, let issuerChain, _):
            let certificates = [try NIOSSLCertificate(bytes: leafDER, format: .der)] + issuerChain
            return built(certificates: certificates, privateKey: try key.load())
        }
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
            chainDER: input.chain.map(\.der), key: input.keyBlock, keepBuilt: false, check: !input.alreadyAccepted)
    }

    /// The leaves kept with their NIOSSL objects by default: the 1,000 most recently made or
    /// served.
    public static let recentlyServedLeaves = 1_000

    /// A factory for the leaves of local CAs (``IssuedCertificateCache``).
    ///
    /// Each leaf keeps its DER and its key (PKCS#8 DER, about 0.7 KB together for P-256).
    /// Its NIOSSL objects are made at once (BoringSSL must accept them) and kept while the
    /// leaf is among the `keepingObjectsFor` most recently made or served of this factory's
    /// leaves (signing, a restore at start and a renewal count as made); a leaf pushed out of
    /// them lets its objects go (about 4.7 KB) and has them made again at its next handshake
    /// (about 11 µs). The certificates after the leaf — its CA's, the same for thousands of
    /// leaves — are made once and shared by every leaf of the factory.
    /// - Parameter keepingObjectsFor: leaves whose objects are kept, at least 1.
    public static func issuedLeafFactory(keepingObjectsFor recentLeaves: Int = recentlyServedLeaves) -> ServingMaterialFactory {
        let shared = SharedChainCertificates()
        let recent = RecentlyServedObjects(capacity: max(1, recentLeaves))
        return { input in
            try NIOServingMaterial(issuedChain: input.chain.map(\.der), key: input.keyBlock, shared: shared, recent: recent)
        }
    }
}

/// The issued leaves whose NIOSSL objects are kept: the most recently made or served, at
/// most `capacity`; the one pushed out drops its objects. Leaves are held weakly: a leaf the
/// cache evicts goes, and leaves this list at its `deinit`.
///
/// Its lock is the innermost: nothing else is locked and no material is released while it is
/// held (the issued-leaf cache may release a leaf under its own lock, whose `deinit` then
/// takes this one). One lock and an LRU touch per handshake of an issued leaf.
final class RecentlyServedObjects: Sendable {
    private struct Held {
        weak var material: NIOServingMaterial?
    }

    private let recent: Mutex<LRUList<ObjectIdentifier, Held>>

    init(capacity: Int) {
        recent = Mutex(LRUList(capacity: capacity))
    }

    /// `material` was just served (or made): it keeps its objects; the least recently
    /// served past the capacity drops its own.
    func served(_ material: NIOServingMaterial) {
        let identifier = ObjectIdentifier(material)
        let pushedOut: NIOServingMaterial? = recent.withLock { recent in
            if recent.get(identifier, time: 0) != nil { return nil }
            return recent.set(identifier, Held(material: material), time: 0)?.value.material
        }
        pushedOut?.dropObjects()
    }

    func forget(_ material: NIOServingMaterial) {
        let identifier = ObjectIdentifier(material)
        recent.withLock { recent in recent.remove(identifier) }
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
