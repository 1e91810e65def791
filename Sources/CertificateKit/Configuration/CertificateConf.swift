/// One `certificates:` entry, with the field names of pingap's `CertificateConf` so
/// configurations carry over.
///
/// `tls_cert` and `tls_key` each take inline PEM, a file path (relative to the config
/// file's folder, `~` expanded) or base64 of PEM; see ``MaterialSource``.
public struct CertificateConf: Codable, Hashable, Sendable {
    /// Names served (or, for an issuer, names it may sign); `nil` → the leaf's SANs.
    public var domains: DomainList?
    public var tlsCert: String?
    public var tlsKey: String?
    public var isDefault: Bool?
    public var isCA: Bool?
    /// The `acme:` CA the certificate is obtained from (pingap's field); such an entry may
    /// have no `tls_cert`/`tls_key` until certgate has obtained them.
    public var acme: String?
    /// Days before notAfter from which the entry counts as expiring (default 7).
    public var bufferDays: Int?
    public var remark: String?
    /// certgate's own: when `tls_cert` and `tls_key` are file paths that do not exist yet,
    /// `certgate run` creates them (a self-signed certificate for `domains`) at start.
    public var createIfMissing: Bool?
    /// certgate's own, for issuer (`is_ca`) entries: leaves name the requested host
    /// (`exact`, the default) or its parent wildcard (`wildcard`).
    public var leafNames: LocalAuthority.LeafNames?
    /// certgate's own, for issuer entries: how long a signed leaf is valid (default 30 days;
    /// never past the CA's own notAfter).
    public var leafValidityDays: Int?
    /// certgate's own, for `acme` entries (DESIGN "On demand"): `domains` are patterns, and a
    /// certificate is obtained for each name that matches at its first handshake.
    public var onDemand: Bool?
    /// certgate's own, for on-demand entries: a URL asked `GET URL?domain=NAME` before a name
    /// is ordered; a 2xx answer allows it, anything else (or no answer in time) refuses it.
    public var ask: String?

    public static let defaultBufferDays = 7

    public init(
        domains: DomainList? = nil,
        tlsCert: String? = nil,
        tlsKey: String? = nil,
        isDefault: Bool? = nil,
        isCA: Bool? = nil,
        acme: String? = nil,
        bufferDays: Int? = nil,
        remark: String? = nil,
        createIfMissing: Bool? = nil,
        leafNames: LocalAuthority.LeafNames? = nil,
        leafValidityDays: Int? = nil,
        onDemand: Bool? = nil,
        ask: String? = nil
    ) {
        self.domains = domains
        self.tlsCert = tlsCert
        self.tlsKey = tlsKey
        self.isDefault = isDefault
        self.isCA = isCA
        self.acme = acme
        self.bufferDays = bufferDays
        self.remark = remark
        self.createIfMissing = createIfMissing
        self.leafNames = leafNames
        self.leafValidityDays = leafValidityDays
        self.onDemand = onDemand
        self.ask = ask
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case domains
        case tlsCert = "tls_cert"
        case tlsKey = "tls_key"
        case isDefault = "is_default"
        case isCA = "is_ca"
        case acme
        case bufferDays = "buffer_days"
        case remark
        case createIfMissing = "create_if_missing"
        case leafNames = "leaf_names"
        case leafValidityDays = "leaf_validity_days"
        case onDemand = "on_demand"
        case ask
    }

    /// Whether this is an on-demand `acme` entry (its domains are patterns).
    public var isOnDemand: Bool { acme != nil && onDemand == true }

    /// Why `on_demand` is refused on an entry that names no ACME CA.
    public static let onDemandWithoutACME = "only for an acme entry (acme: CA, on_demand: true)"
    /// Why `ask` is refused on an entry that is not on demand.
    public static let askWithoutOnDemand = "only for an on-demand entry (acme: CA, on_demand: true)"

    public var effectiveBufferDays: Int { bufferDays ?? Self.defaultBufferDays }

    /// The keys an entry may hold in YAML (`tls_cert`, `is_default`, …).
    public static let fieldNames: [String] = CodingKeys.allCases.map(\.rawValue)

    /// `buffer_days` may be 0 to 3650 (ten years).
    public static let bufferDaysRange = 0...3_650
    /// `leaf_validity_days` may be 1 to 397: browsers refuse TLS leaves valid for more
    /// than 398 days (Apple since 2020-09, Chrome and Mozilla after), and a day is kept
    /// for clock skew.
    public static let leafValidityDaysRange = 1...397
}

/// `domains` as pingap writes it (`"a.test,b.test"`) or as a YAML list.
public struct DomainList: Codable, Hashable, Sendable, ExpressibleByArrayLiteral, ExpressibleByStringLiteral {
    public var items: [String]

    public init(_ items: [String]) {
        self.items = items
    }

    /// Splits a comma-separated string, trimming spaces and dropping empty items.
    public init(commaSeparated text: String) {
        self.items = text.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
    }

    public init(arrayLiteral elements: String...) { self.init(elements) }
    public init(stringLiteral value: String) { self.init(commaSeparated: value) }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self.init(commaSeparated: text)
        } else {
            let list = try container.decode([String].self)
            self.init(list.map { $0.trimmingSpaces() }.filter { !$0.isEmpty })
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(items.joined(separator: ","))
    }
}
