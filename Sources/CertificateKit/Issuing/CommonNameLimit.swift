/// RFC 5280's upper bound on a subject's commonName: `ub-common-name INTEGER ::= 64`
/// (Appendix A.1). A name longer than that goes in the subjectAlternativeName alone,
/// where clients look for it anyway (RFC 6125 §6.4.4); the subject is then empty and the
/// SAN extension critical (RFC 5280 §4.2.1.6).
public enum CommonNameLimit {
    public static let maximumLength = 64

    /// Whether `name` may be a commonName.
    public static func fits(_ name: String) -> Bool {
        !name.isEmpty && name.count <= maximumLength
    }
}
