import Foundation

/// What a certificate is for (RFC 8555 §9.7.7): a DNS name (possibly `*.` wildcard) or an
/// IP address (RFC 8738).
public struct ACMEIdentifier: Sendable, Codable, Hashable {
    public var type: String
    public var value: String

    public init(type: String, value: String) {
        self.type = type
        self.value = value
    }

    public static func dns(_ name: String) -> ACMEIdentifier { ACMEIdentifier(type: "dns", value: name) }
}

/// The state of an order, authorization or challenge (RFC 8555 §7.1.6).
public enum ACMEStatus: String, Sendable, Codable, Equatable {
    case pending, ready, processing, valid, invalid, expired, deactivated, revoked
}

/// An account object (RFC 8555 §7.1.2).
public struct ACMEAccount: Sendable, Decodable, Equatable {
    public var status: ACMEStatus
    public var contact: [String]?
    public var orders: String?
}

/// An order object (RFC 8555 §7.1.3).
public struct ACMEOrder: Sendable, Decodable, Equatable {
    public var status: ACMEStatus
    public var expires: String?
    public var identifiers: [ACMEIdentifier]
    public var authorizations: [String]
    public var finalize: String
    public var certificate: String?
    public var error: ACMEProblem?
    /// ACME profiles: the profile the order was made under.
    public var profile: String?
}

/// An authorization object (RFC 8555 §7.1.4).
public struct ACMEAuthorization: Sendable, Decodable, Equatable {
    public var identifier: ACMEIdentifier
    public var status: ACMEStatus
    public var expires: String?
    public var challenges: [ACMEChallenge]
    public var wildcard: Bool?
}

/// A challenge object (RFC 8555 §8; RFC 8737 for `tls-alpn-01`).
public struct ACMEChallenge: Sendable, Decodable, Equatable {
    public var type: String
    public var url: String
    public var status: ACMEStatus
    public var token: String?
    public var validated: String?
    public var error: ACMEProblem?
}

/// ARI's answer (RFC 9773 §4.2): when the CA suggests renewing.
public struct ACMERenewalInfo: Sendable, Decodable, Equatable {
    public struct Window: Sendable, Decodable, Equatable {
        public var start: Date
        public var end: Date
    }

    public var suggestedWindow: Window
    public var explanationURL: String?
}
