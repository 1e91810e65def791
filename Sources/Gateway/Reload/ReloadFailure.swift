import CertificateKit

/// Why a reload (SIGHUP, `ReloadConfig`) or an update applied nothing, in the terms of its
/// input: the configuration file's errors, or the update transaction's failure with each
/// entry's error (entry, field, reason) — the same values `UpdateCertificates` reports.
public enum ReloadFailure: Error, Sendable, CustomStringConvertible {
    /// The file does not load, or does not fit the running gateway (a listener's TLS
    /// settings refused): every problem with its file, key and (where known) line.
    case configuration([ConfigurationError])
    /// The certificate set failed the update transaction (invalid entries; the state
    /// could not commit).
    case update(CertificateUpdateFailure)

    public var description: String {
        switch self {
        case .configuration(let errors): return errors.map(\.description).joined(separator: "\n")
        case .update(let failure): return failure.description
        }
    }
}
