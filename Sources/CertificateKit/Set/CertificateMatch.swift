/// The answer to "which certificate for this handshake?".
public struct CertificateMatch: Sendable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The SNI equals one of the entry's names.
        case exact
        /// The SNI minus its first label equals the entry's `*.` name.
        case wildcard
        /// An issuer whose domains are `*` (not the default) took a name nobody claims.
        case catchAll = "catch_all"
        /// No entry claims the name (or there was no SNI and no IP match).
        case `default`
        /// No SNI; the entry's IP SAN is the address the client connected to.
        case ip
        /// Not a lookup's answer: the gateway served a certificate obtained on demand for a
        /// name no entry claims (an on-demand ACME entry's pattern took it).
        case onDemand = "on_demand"
    }

    public let entry: CertificateEntry
    public let kind: Kind
    /// The normalised SNI; `nil` when the client sent none (or an invalid one).
    public let serverName: ServerName?
}
