import CertificateKit
import Foundation
import Yams

/// Decodes one `certificates:` entry straight from its YAML node, one pass over its pairs.
///
/// `YAMLDecoder` looks each of the entry's keys up by comparing YAML nodes, and a
/// comparison resolves the nodes' tags through regular expressions: at 10,000 entries that
/// was a fifth of `certgate check`. The keys here are read as plain strings instead. The
/// reasons match `YAMLErrorLocation`'s for the same mistakes (`expected a string`, …).
enum CertificateConfDecoder {
    static func decode(_ node: Node, name: String, file: String) throws(ConfigurationError) -> CertificateConf {
        let path = "certificates.\(name)"
        guard let mapping = node.mapping else {
            if node.null != nil { return CertificateConf() }
            throw error(path, at: node, file: file, "expected a mapping")
        }
        var conf = CertificateConf()
        for (key, value) in mapping {
            guard let field = key.string else { continue }  // not a known key: ConfigurationSchema reports it
            if value.null != nil, value.scalar?.style == .plain { continue }  // `tls_key:` / `~`: absent
            let place = "\(path).\(field)"
            switch field {
            case "domains": conf.domains = try domains(value, place, file)
            case "tls_cert": conf.tlsCert = try string(value, place, file)
            case "tls_key": conf.tlsKey = try string(value, place, file)
            case "is_default": conf.isDefault = try bool(value, place, file)
            case "is_ca": conf.isCA = try bool(value, place, file)
            case "acme": conf.acme = try string(value, place, file)
            case "buffer_days": conf.bufferDays = try int(value, place, file)
            case "remark": conf.remark = try string(value, place, file)
            case "create_if_missing": conf.createIfMissing = try bool(value, place, file)
            case "leaf_names":
                let text = try string(value, place, file)
                guard let names = LocalAuthority.LeafNames(rawValue: text) else {
                    throw error(place, at: value, file: file, "must be exact or wildcard, not \(QuotedValue.quote(text))")
                }
                conf.leafNames = names
            case "leaf_validity_days": conf.leafValidityDays = try int(value, place, file)
            case "on_demand": conf.onDemand = try bool(value, place, file)
            case "ask": conf.ask = try string(value, place, file)
            default: continue  // reported by ConfigurationSchema
            }
        }
        return conf
    }

    private static func string(_ node: Node, _ place: String, _ file: String) throws(ConfigurationError) -> String {
        guard let scalar = node.scalar else { throw error(place, at: node, file: file, "expected a string") }
        return scalar.string
    }

    // The document is composed without type resolution (see `YAMLResolution`): the few
    // values that are not strings are resolved here, one by one, as Yams would have.
    private static func bool(_ node: Node, _ place: String, _ file: String) throws(ConfigurationError) -> Bool {
        guard let value = node.scalar.flatMap({ Node.scalar(YAMLResolution.resolved($0)).bool }) else {
            throw error(place, at: node, file: file, "expected true or false")
        }
        return value
    }

    private static func int(_ node: Node, _ place: String, _ file: String) throws(ConfigurationError) -> Int {
        guard let value = node.scalar.flatMap({ Node.scalar(YAMLResolution.resolved($0)).int }) else {
            throw error(place, at: node, file: file, "expected a whole number")
        }
        return value
    }

    /// A comma-separated string or a list of strings.
    private static func domains(_ node: Node, _ place: String, _ file: String) throws(ConfigurationError) -> DomainList {
        if let scalar = node.scalar { return DomainList(commaSeparated: scalar.string) }
        guard let sequence = node.sequence else { throw error(place, at: node, file: file, "expected a string or a list") }
        var items: [String] = []
        for (index, item) in sequence.enumerated() {
            guard let scalar = item.scalar else { throw error("\(place).\(index)", at: item, file: file, "expected a string") }
            let trimmed = scalar.string.trimmingCharacters(in: .whitespaces)
            if !trimmed.isEmpty { items.append(trimmed) }
        }
        return DomainList(items)
    }

    private static func error(_ key: String, at node: Node, file: String, _ reason: String) -> ConfigurationError {
        ConfigurationError(file: file, key: key, line: node.mark?.line, column: node.mark?.column, reason: reason)
    }
}
