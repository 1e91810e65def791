import CertificateKit
import Foundation

/// One `acme:` item: an ACME CA certificates can be obtained from (RFC 8555), by name.
/// `letsencrypt` and `letsencrypt-staging` exist without being written.
public struct ACMEIssuerConfiguration: Sendable, Decodable, Equatable {
    /// A challenge type certgate answers.
    public enum Challenge: String, Sendable, Decodable, Equatable, CaseIterable {
        case tlsALPN01 = "tls-alpn-01"
        case http01 = "http-01"
        case dns01 = "dns-01"

        public init(from decoder: any Decoder) throws {
            self = try ConfigEnum.decode(from: decoder)
        }
    }

    /// External account binding (RFC 8555 §7.3.4): the CA's key identifier and MAC key
    /// (base64url, as CAs hand it out).
    public struct ExternalAccount: Sendable, Decodable, Equatable {
        public var kid: String
        public var hmacKey: String

        enum CodingKeys: String, CodingKey, CaseIterable {
            case kid
            case hmacKey = "hmac_key"
        }
    }

    /// The directory URL (https).
    public var directory: String
    /// Contact for the account (`mailto:` is added).
    public var email: String?
    /// A PEM file of extra roots for the directory's own HTTPS (a private CA, Pebble).
    public var caRoots: String?
    /// Tried in this order, among those the CA offers for a name.
    public var challenges: [Challenge]
    /// `dns-01`: a command run without a shell as `HOOK… present|cleanup FQDN VALUE`.
    public var dnsHook: [String]?
    public var eab: ExternalAccount?
    /// The common name of the top issuer of the chain to serve, when the CA offers several.
    public var preferredChain: String?
    /// An ACME profile the directory lists.
    public var profile: String?
    /// Renew this long before notAfter (otherwise when a third of the lifetime is left, or
    /// as the CA's ARI window says).
    public var renewBefore: ConfigDuration?

    public static let defaultChallenges: [Challenge] = [.tlsALPN01, .http01]

    /// The CAs every configuration knows.
    public static let builtIn: [String: ACMEIssuerConfiguration] = [
        "letsencrypt": ACMEIssuerConfiguration(directory: "https://acme-v02.api.letsencrypt.org/directory"),
        "letsencrypt-staging": ACMEIssuerConfiguration(directory: "https://acme-staging-v02.api.letsencrypt.org/directory"),
    ]

    public init(directory: String, email: String? = nil, challenges: [Challenge] = ACMEIssuerConfiguration.defaultChallenges) {
        self.directory = directory
        self.email = email
        self.challenges = challenges
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case directory, email, challenges, eab, profile
        case caRoots = "ca_roots"
        case dnsHook = "dns_hook"
        case preferredChain = "preferred_chain"
        case renewBefore = "renew_before"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        directory = try container.decode(String.self, forKey: .directory)
        guard directory.lowercased().hasPrefix("https://") else {
            throw DecodingError.dataCorruptedError(forKey: .directory, in: container, debugDescription: "\(QuotedValue.quote(directory)) is not an https URL")
        }
        email = try container.decodeIfPresent(String.self, forKey: .email)
        caRoots = try container.decodeIfPresent(String.self, forKey: .caRoots)
        challenges = try container.decodeIfPresent([Challenge].self, forKey: .challenges) ?? Self.defaultChallenges
        dnsHook = try container.decodeIfPresent([String].self, forKey: .dnsHook)
        eab = try container.decodeIfPresent(ExternalAccount.self, forKey: .eab)
        preferredChain = try container.decodeIfPresent(String.self, forKey: .preferredChain)
        profile = try container.decodeIfPresent(String.self, forKey: .profile)
        renewBefore = try container.decodeIfPresent(ConfigDuration.self, forKey: .renewBefore)
    }
}

extension ListenerConfiguration {
    /// What a listener speaks: TLS (the default), or plain HTTP, which answers ACME
    /// `http-01` challenges and redirects everything else to https.
    public enum ListenerProtocol: String, Hashable, Sendable, Decodable, CaseIterable {
        case tls
        case http

        public init(from decoder: any Decoder) throws {
            self = try ConfigEnum.decode(from: decoder)
        }
    }
}
