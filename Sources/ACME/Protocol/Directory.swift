/// An ACME server's directory (RFC 8555 §7.1.1): the URLs of its resources.
public struct ACMEDirectory: Sendable, Decodable, Equatable {
    public var newNonce: String
    public var newAccount: String
    public var newOrder: String
    public var revokeCert: String?
    public var keyChange: String?
    /// ARI (RFC 9773 §4): `renewalInfo` base URL, when the CA offers it.
    public var renewalInfo: String?
    public var meta: Meta?

    public struct Meta: Sendable, Decodable, Equatable {
        public var termsOfService: String?
        public var website: String?
        public var caaIdentities: [String]?
        /// The CA requires an external account binding (RFC 8555 §7.3.4).
        public var externalAccountRequired: Bool?
        /// ACME profiles (draft-aaron-acme-profiles): name → description.
        public var profiles: [String: String]?
    }

    public init(newNonce: String, newAccount: String, newOrder: String, renewalInfo: String? = nil, meta: Meta? = nil) {
        self.newNonce = newNonce
        self.newAccount = newAccount
        self.newOrder = newOrder
        self.renewalInfo = renewalInfo
        self.meta = meta
    }
}
