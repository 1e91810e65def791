/// A problem document (RFC 7807; RFC 8555 §6.7): what the CA says went wrong.
public struct ACMEProblem: Sendable, Decodable, Equatable, CustomStringConvertible {
    /// e.g. `urn:ietf:params:acme:error:badNonce`.
    public var type: String
    public var detail: String?
    public var status: Int?
    /// Per identifier (RFC 8555 §6.7.1).
    public var subproblems: [Subproblem]?

    public struct Subproblem: Sendable, Decodable, Equatable {
        public var type: String
        public var detail: String?
        public var identifier: ACMEIdentifier?
    }

    public init(type: String, detail: String? = nil, status: Int? = nil, subproblems: [Subproblem]? = nil) {
        self.type = type
        self.detail = detail
        self.status = status
        self.subproblems = subproblems
    }

    static let acmeErrorPrefix = "urn:ietf:params:acme:error:"

    /// The ACME error name without its URN prefix (`badNonce`, `rateLimited`, …), or the
    /// whole type for others.
    public var kind: String {
        type.hasPrefix(Self.acmeErrorPrefix) ? String(type.dropFirst(Self.acmeErrorPrefix.count)) : type
    }

    public var isBadNonce: Bool { kind == "badNonce" }
    public var isRateLimited: Bool { kind == "rateLimited" }

    /// `kind: detail` and each subproblem's, with the CA's text shown safely (control
    /// characters escaped, at most 300 characters each): the CA's words are for the operator.
    public var description: String {
        var text = kind
        if let detail, !detail.isEmpty { text += ": " + Self.shown(detail) }
        for sub in subproblems ?? [] {
            let name = sub.identifier.map { " (\($0.value))" } ?? ""
            text += "; \(sub.type.hasPrefix(Self.acmeErrorPrefix) ? String(sub.type.dropFirst(Self.acmeErrorPrefix.count)) : sub.type)\(Self.shown(name))"
            if let detail = sub.detail { text += ": " + Self.shown(detail) }
        }
        return text
    }

    static func shown(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars.prefix(300) {
            if scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format {
                result += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return text.unicodeScalars.count > 300 ? result + "…" : result
    }
}
