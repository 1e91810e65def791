import CertificateKit
import Foundation

/// The per-entry validity series of the contract, rendered from the served set when
/// `/metrics` is scraped — so they always match the set (an entry's series go with it)
/// and an update costs nothing here, whatever the set's size:
/// `certgate_certificate_not_after_timestamp_seconds{name}`,
/// `certgate_certificate_not_before_timestamp_seconds{name}` and
/// `certgate_certificate_expiring{name}` (1 within `buffer_days` of notAfter, or past it).
enum ValiditySeries {
    static let notAfter = "certgate_certificate_not_after_timestamp_seconds"
    static let notBefore = "certgate_certificate_not_before_timestamp_seconds"
    static let expiring = "certgate_certificate_expiring"

    /// Appends the three series for every entry of `set`, in the Prometheus text format.
    static func render(_ set: CertificateSet, now: Date, into output: inout [UInt8]) {
        let entries = set.sortedEntries
        let validities = entries.map { $0.validity(at: now) }
        let labels = entries.map { "{name=\"\(escape($0.name))\"} " }
        func family(_ name: String, help: String, value: (CertificateValidity) -> String) {
            output.append(contentsOf: "# HELP \(name) \(help)\n# TYPE \(name) gauge\n".utf8)
            for index in entries.indices {
                output.append(contentsOf: name.utf8)
                output.append(contentsOf: labels[index].utf8)
                output.append(contentsOf: value(validities[index]).utf8)
                output.append(UInt8(ascii: "\n"))
            }
        }
        family(notAfter, help: "notAfter of the entry's certificate, in seconds since the Unix epoch") {
            String(Int64($0.notAfter.timeIntervalSince1970))
        }
        family(notBefore, help: "notBefore of the entry's certificate, in seconds since the Unix epoch") {
            String(Int64($0.notBefore.timeIntervalSince1970))
        }
        family(expiring, help: "1 when the entry's certificate is within buffer_days of notAfter (or past it)") {
            $0.state == .expiring || $0.state == .expired ? "1" : "0"
        }
    }

    static let renewAt = "certgate_certificate_renew_at_timestamp_seconds"

    /// `certgate_certificate_renew_at_timestamp_seconds{name}`: when each `acme` entry's
    /// certificate is due for renewal (DESIGN "Obtaining certificates").
    static func renderRenewalTimes(_ times: [String: Date], into output: inout [UInt8]) {
        guard !times.isEmpty else { return }
        output.append(contentsOf: "# HELP \(renewAt) when the acme entry's certificate is renewed, in seconds since the Unix epoch\n# TYPE \(renewAt) gauge\n".utf8)
        for (name, time) in times.sorted(by: { $0.key < $1.key }) {
            output.append(contentsOf: "\(renewAt){name=\"\(escape(name))\"} \(Int64(time.timeIntervalSince1970))\n".utf8)
        }
    }

    /// A label value as the text format needs it: `\`, `"` and newlines escaped.
    static func escape(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
