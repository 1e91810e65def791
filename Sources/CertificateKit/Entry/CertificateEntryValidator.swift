import Foundation
import SwiftASN1
import X509

/// What a ``ServingMaterialFactory`` turns into an entry's TLS form.
public struct ServingMaterialInput: Sendable {
    /// The certificates a handshake sends, leaf first.
    public var chain: [ParsedCertificate]
    /// The private key's PEM block, decoded: its label (`PRIVATE KEY`, `EC PRIVATE KEY`,
    /// `RSA PRIVATE KEY`) and its DER. The TLS layer can take the DER as it is, with no
    /// base64 on either side.
    public var keyBlock: PEMDocument
    /// The TLS library accepted exactly this material when it was committed, and it has
    /// provably not changed since (a restart from the state): no need to check it again.
    public var alreadyAccepted: Bool

    /// The key's PEM block as text.
    public var keyPEM: String { keyBlock.pemString }

    public init(chain: [ParsedCertificate], keyBlock: PEMDocument, alreadyAccepted: Bool = false) {
        self.chain = chain
        self.keyBlock = keyBlock
        self.alreadyAccepted = alreadyAccepted
    }

    /// - Parameter keyPEM: PEM text holding one private key block (other blocks, such as
    ///   `EC PARAMETERS`, are left out).
    /// - Throws: ``PEMMaterialParser/Failure`` when `keyPEM` is not valid PEM or holds no
    ///   or several private keys (the reason never quotes the text).
    public init(chain: [ParsedCertificate], keyPEM: String, alreadyAccepted: Bool = false) throws(PEMMaterialParser.Failure) {
        self.init(chain: chain, keyBlock: try PEMMaterialParser.keyBlock(fromPEM: keyPEM), alreadyAccepted: alreadyAccepted)
    }
}

/// Turns the ready-made TLS form of an entry out of a validated entry's parts
/// (CertificateKitNIO builds NIOSSL objects); it runs once per new or changed entry.
/// - Throws: the TLS library refuses the material (checked unless `alreadyAccepted`).
public typealias ServingMaterialFactory = @Sendable (ServingMaterialInput) throws -> any Sendable

/// What a build needs from its surroundings: where relative paths start, the clock's
/// reading, the CA certificates chains are completed from, and the TLS layer's factory.
public struct CertificateBuildContext: Sendable {
    public var baseDirectory: String?
    public var now: Date
    public var chainCompletion: ChainCompletion
    public var servingMaterialFactory: ServingMaterialFactory?
    /// `servingMaterialFactory` refuses an EC private key whose scalar does not yield the
    /// public key the key states (BoringSSL, behind `NIOServingMaterial.factory`, checks it
    /// when it loads the key: `EC_KEY_check_key`). A static entry whose key states the public
    /// key of its certificate is then not parsed or matched here — the curve arithmetic is
    /// done once, by the TLS library — and is validated in full when the factory refuses it.
    public var factoryChecksKeyPairs: Bool

    public init(
        baseDirectory: String? = nil,
        now: Date = Date(),
        chainCompletion: ChainCompletion = LetsEncryptBundle.completion,
        servingMaterialFactory: ServingMaterialFactory? = nil,
        factoryChecksKeyPairs: Bool = false
    ) {
        self.baseDirectory = baseDirectory
        self.now = now
        self.chainCompletion = chainCompletion
        self.servingMaterialFactory = servingMaterialFactory
        self.factoryChecksKeyPairs = factoryChecksKeyPairs && servingMaterialFactory != nil
    }
}

/// Validates one entry on its own (names claimed by other entries are the set's job).
enum CertificateEntryValidator {
    /// Reads the entry's PEM text (files, base64) without parsing it.
    /// The stamps of the files an entry's values name, in order (`tls_cert`, then
    /// `tls_key`); nil when one of them cannot be stamped (it is then read, and its error
    /// reported, as usual).
    static func fileStamps(conf: CertificateConf, baseDirectory: String?) -> [FileStamp]? {
        var stamps: [FileStamp] = []
        for value in [conf.tlsCert, conf.tlsKey].compactMap({ $0 }) {
            guard case .file(let path) = MaterialSource(value) else { continue }
            guard let stamp = FileStamp(path: MaterialSource.resolve(path: path, baseDirectory: baseDirectory)) else { return nil }
            stamps.append(stamp)
        }
        return stamps
    }

    /// The entry's PEM text and the stamps of the files it was read from, in the order of
    /// ``fileStamps(conf:baseDirectory:)`` (each file stamped as it was read).
    static func readContent(name: String, conf: CertificateConf, baseDirectory: String?) throws(CertificateEntryError) -> (content: EntryContent, stamps: [FileStamp]) {
        guard let certValue = conf.tlsCert, !certValue.trimmingSpaces().isEmpty else {
            throw CertificateEntryError(entry: name, field: "tls_cert", reason: "missing")
        }
        let certificate = try MaterialSource(certValue).readStamped(baseDirectory: baseDirectory, entry: name, field: "tls_cert")
        if let keyValue = conf.tlsKey, !keyValue.trimmingSpaces().isEmpty {
            let key = try MaterialSource(keyValue).readStamped(baseDirectory: baseDirectory, entry: name, field: "tls_key")
            return (EntryContent(certificatePEM: certificate.text, keyPEM: key.text), [certificate.stamp, key.stamp].compactMap { $0 })
        }
        guard PEMMaterialParser.containsPrivateKey(certificate.text) else {
            throw CertificateEntryError(entry: name, field: "tls_key", reason: "missing (and tls_cert holds no private key)")
        }
        return (EntryContent(certificatePEM: certificate.text, keyPEM: certificate.text), [certificate.stamp].compactMap { $0 })
    }

    /// Parses and checks everything about one entry; every problem becomes an error
    /// naming the entry and field.
    ///
    /// - Parameter verified: the content was validated in full when it was committed and
    ///   provably has not changed since (a restart from the state). A static entry then
    ///   skips the checks whose answer cannot have changed — the key is not parsed (no
    ///   curve arithmetic) nor matched, the chain's signatures are not checked again, the
    ///   TLS library does not parse the material until a handshake needs it. What depends
    ///   on the clock (validity, chain completion) and what listings need (the leaf's facts,
    ///   names, warnings) is computed as always. An issuer entry is validated in full.
    static func validate(
        name: String, conf: CertificateConf, content: EntryContent, fileStamps: [FileStamp] = [],
        context: CertificateBuildContext, verified: Bool = false
    ) -> Result<CertificateEntry, CertificateSetError> {
        if verified, conf.isCA != true, let keyBlock = PEMMaterialParser.verifiedPrivateKeyBlock(fromPEM: content.keyPEM),
           case .success(let entry) = validateVerified(name: name, conf: conf, content: content, keyBlock: keyBlock, context: context) {
            return .success(entry)
        }
        return validateInFull(name: name, conf: conf, content: content, fileStamps: fileStamps, context: context)
    }

    private static func validateInFull(
        name: String, conf: CertificateConf, content: EntryContent, fileStamps: [FileStamp],
        context: CertificateBuildContext, keyPairProvenByFactory: Bool = true
    ) -> Result<CertificateEntry, CertificateSetError> {
        func error(_ field: String, _ reason: String) -> CertificateEntryError {
            CertificateEntryError(entry: name, field: field, reason: reason)
        }
        var errors: [CertificateEntryError] = []
        var warnings: [String] = []

        let certificates: [ParsedCertificate]
        do {
            certificates = try PEMMaterialParser.certificates(fromPEM: content.certificatePEM)
        } catch {
            errors.append(CertificateEntryError(entry: name, field: "tls_cert", reason: error.reason))
            certificates = []
        }
        let keyField = conf.tlsKey == nil ? "tls_cert" : "tls_key"
        // The key stated by a static entry's key file, when it is its leaf's and the TLS
        // library will prove the pair (see `factoryChecksKeyPairs`).
        var statedKeyBlock: PEMDocument?
        if keyPairProvenByFactory, context.factoryChecksKeyPairs, context.servingMaterialFactory != nil, conf.isCA != true,
           let leaf = certificates.first,
           let stated = PEMMaterialParser.statedKey(fromPEM: content.keyPEM),
           stated.publicKey == StatedECPublicKey(certificateDER: leaf.der) {
            statedKeyBlock = stated.block
        }
        var privateKey: ParsedPrivateKey?
        if statedKeyBlock == nil {
            do {
                privateKey = try PEMMaterialParser.privateKey(fromPEM: content.keyPEM)
            } catch {
                errors.append(CertificateEntryError(entry: name, field: keyField, reason: error.reason))
            }
        }
        if let days = conf.bufferDays, !CertificateConf.bufferDaysRange.contains(days) {
            errors.append(error("buffer_days", "must be 0 to 3650 days, not \(days)"))
        }
        if conf.acme == nil {
            if conf.onDemand != nil { errors.append(error("on_demand", CertificateConf.onDemandWithoutACME)) }
            if conf.ask != nil { errors.append(error("ask", CertificateConf.askWithoutOnDemand)) }
        }
        if conf.isCA != true {
            if conf.leafNames != nil { errors.append(error("leaf_names", "only for an issuer (is_ca) entry")) }
            if conf.leafValidityDays != nil { errors.append(error("leaf_validity_days", "only for an issuer (is_ca) entry")) }
        } else if let days = conf.leafValidityDays, !CertificateConf.leafValidityDaysRange.contains(days) {
            errors.append(error("leaf_validity_days", "must be 1 to 397 days, not \(days) (browsers refuse TLS leaves valid for more than 398 days)"))
        }
        guard let leaf = certificates.first, let keyBlock = statedKeyBlock ?? privateKey?.block else { return .failure(CertificateSetError(errors)) }

        let hygiene = ChainHygiene(certificates, key: privateKey.map { .publicKey($0.key.publicKey) } ?? .matchesFirst)
        if hygiene.keyMismatch {
            errors.append(error(keyField, "the private key does not match the certificate (\(ChainHygiene.describe(leaf.certificate)))"))
        }
        errors += hygiene.errors.map { error("tls_cert", $0) }
        warnings += hygiene.warnings

        let isCA = conf.isCA ?? false
        if isCA && !leaf.certificate.isCertificateAuthority {
            errors.append(error("is_ca", "the certificate (\(ChainHygiene.describe(leaf.certificate))) is not a CA allowed to sign certificates (needs basicConstraints CA:TRUE and, if key usage is present, keyCertSign)"))
        }

        let names = servedNames(conf: conf, leaf: leaf)
        let patterns = names.patterns
        errors += names.domainErrors.map { error("domains", $0) }
        warnings += names.warnings
        if patterns.contains(.any) && !isCA {
            errors.append(error("domains", "'*' is only for an issuer (is_ca) entry; to serve every other name use is_default: true"))
        }
        if patterns.isEmpty && !(conf.isDefault ?? false) {
            let reason = conf.domains == nil
                ? "serves no name: no domains given and the certificate has no DNS or IP subjectAlternativeName"
                : "serves no name: domains is empty"
            errors.append(error("domains", reason))
        }
        if !isCA { warnings += uncoveredNameWarnings(conf: conf, patterns: patterns, leaf: leaf) }
        guard errors.isEmpty else { return .failure(CertificateSetError(errors)) }

        let (chain, chainWasCompleted) = sentChain(leaf: leaf, hygiene: hygiene, context: context)
        warnings += validityWarnings(conf: conf, leaf: leaf, now: context.now)

        var material: (any Sendable)?
        if let factory = context.servingMaterialFactory {
            do {
                material = try factory(ServingMaterialInput(chain: [leaf] + chain, keyBlock: keyBlock))
            } catch {
                if statedKeyBlock != nil {
                    // Refused: the full path says why when it can (a key that is not the pair
                    // it states fails the match there).
                    return validateInFull(
                        name: name, conf: conf, content: content, fileStamps: fileStamps, context: context, keyPairProvenByFactory: false)
                }
                return .failure(CertificateSetError([self.error(name, "tls_cert", "the TLS library (BoringSSL) refused the certificate chain or the private key")]))
            }
        }
        return .success(CertificateEntry(
            name: name, conf: conf, content: content, fileStamps: fileStamps, leaf: leaf, chain: chain,
            chainWasCompleted: chainWasCompleted, privateKey: privateKey, patterns: patterns,
            kind: isCA ? .issuer : .static, isDefault: conf.isDefault ?? false,
            warnings: warnings, servingMaterial: material))
    }

    /// A static entry whose stored content was validated when it was committed: the leaf
    /// and chain are parsed for their facts; nothing that was proven then is proven again.
    /// Any surprise (a parse failure, a chain that no longer reads the same) fails, and the
    /// caller validates in full, which reports it as usual.
    private static func validateVerified(
        name: String, conf: CertificateConf, content: EntryContent, keyBlock: PEMDocument, context: CertificateBuildContext
    ) -> Result<CertificateEntry, CertificateSetError> {
        guard let certificates = try? PEMMaterialParser.certificates(fromPEM: content.certificatePEM),
              let leaf = certificates.first else {
            return .failure(CertificateSetError([error(name, "tls_cert", "the stored certificate no longer parses")]))
        }
        let hygiene = ChainHygiene(certificates, key: nil)
        let names = servedNames(conf: conf, leaf: leaf)
        guard names.domainErrors.isEmpty else {
            return .failure(CertificateSetError(names.domainErrors.map { error(name, "domains", $0) }))
        }
        let patterns = names.patterns
        var warnings = hygiene.warnings + names.warnings + uncoveredNameWarnings(conf: conf, patterns: patterns, leaf: leaf)
        let (chain, chainWasCompleted) = sentChain(leaf: leaf, hygiene: hygiene, context: context)
        warnings += validityWarnings(conf: conf, leaf: leaf, now: context.now)
        var material: (any Sendable)?
        if let factory = context.servingMaterialFactory {
            guard let made = try? factory(ServingMaterialInput(chain: [leaf] + chain, keyBlock: keyBlock, alreadyAccepted: true)) else {
                return .failure(CertificateSetError([error(name, "tls_cert", "the TLS library refused the stored material")]))
            }
            material = made
        }
        return .success(CertificateEntry(
            name: name, conf: conf, content: content, fileStamps: [], leaf: leaf, chain: chain,
            chainWasCompleted: chainWasCompleted, privateKey: nil, patterns: patterns,
            kind: .static, isDefault: conf.isDefault ?? false, warnings: warnings, servingMaterial: material))
    }

    /// The names an entry serves: its `domains`, or else its leaf's DNS and IP SANs (a SAN
    /// that is no valid name is skipped with a warning); sorted, each once.
    private static func servedNames(conf: CertificateConf, leaf: ParsedCertificate) -> (patterns: [NamePattern], domainErrors: [String], warnings: [String]) {
        var patterns: [NamePattern] = []
        var domainErrors: [String] = []
        var warnings: [String] = []
        if let domains = conf.domains {
            for item in domains.items {
                switch NamePattern.parse(item) {
                case .success(let pattern): patterns.append(pattern)
                case .failure(let failure): domainErrors.append(failure.description)
                }
            }
        } else {
            for dnsName in leaf.certificate.dnsNames {
                switch NamePattern.parse(dnsName) {
                case .success(let pattern): patterns.append(pattern)
                case .failure(let failure): warnings.append("SAN skipped: \(failure)")
                }
            }
            patterns += leaf.certificate.ipAddresses.map(NamePattern.ip)
        }
        return (Array(Set(patterns)).sorted(), domainErrors, warnings)
    }

    /// A warning for each of a static entry's `domains` its leaf's SANs do not cover.
    private static func uncoveredNameWarnings(conf: CertificateConf, patterns: [NamePattern], leaf: ParsedCertificate) -> [String] {
        guard conf.domains != nil else { return [] }
        let sanPatterns = leaf.certificate.dnsNames.compactMap { try? NamePattern.parse($0).get() }
        let sanIPs = Set(leaf.certificate.ipAddresses)
        return patterns.filter { !isCovered($0, byDNS: sanPatterns, ips: sanIPs) }.map {
            "'\($0)' is not among the certificate's subjectAlternativeNames; clients will reject it for that name"
        }
    }

    /// What follows the leaf in a handshake: the file's own chain, or the completed one.
    private static func sentChain(leaf: ParsedCertificate, hygiene: ChainHygiene, context: CertificateBuildContext) -> (chain: [ParsedCertificate], completed: Bool) {
        let own = Array(hygiene.served.dropFirst())
        guard own.isEmpty && !leaf.certificate.isSelfSigned else { return (own, false) }
        let completed = context.chainCompletion.chain(for: leaf.certificate, at: context.now)
        return (completed, !completed.isEmpty)
    }

    /// An expired or not-yet-valid leaf is served, with a warning.
    private static func validityWarnings(conf: CertificateConf, leaf: ParsedCertificate, now: Date) -> [String] {
        let validity = CertificateValidity(
            notBefore: leaf.certificate.notValidBefore, notAfter: leaf.certificate.notValidAfter,
            bufferDays: conf.effectiveBufferDays, now: now)
        switch validity.state {
        case .expired: return ["expired \(-validity.daysLeft) days ago; still served"]
        case .notYetValid: return ["not valid before \(leaf.certificate.notValidBefore); still served"]
        case .expiring, .ok: return []
        }
    }

    private static func error(_ entry: String, _ field: String, _ reason: String) -> CertificateEntryError {
        CertificateEntryError(entry: entry, field: field, reason: reason)
    }

    private static func isCovered(_ pattern: NamePattern, byDNS sans: [NamePattern], ips: Set<IPAddress>) -> Bool {
        switch pattern {
        case .ip(let address): return ips.contains(address)
        case .any: return true
        case .wildcard: return sans.contains(pattern)
        case .exact(let name): return sans.contains { $0.matches(name) }
        }
    }
}
