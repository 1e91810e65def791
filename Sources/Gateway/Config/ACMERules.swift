import Foundation
import ACME
import CertificateKit

/// The rules of `acme:` and of `certificates:` entries that name an ACME CA.
enum ACMERules {
    /// - Parameter issuersElsewhere: the entries' CAs are the gateway's, not this file's (a
    ///   file of entries for `ctl apply`/`upsert`): an unknown CA name is left to the gateway.
    static func problems(in configuration: GatewayConfiguration, issuersElsewhere: Bool = false) -> [ConfigurationRules.Problem] {
        var problems: [ConfigurationRules.Problem] = []
        for (name, issuer) in configuration.acme.sorted(by: { $0.key < $1.key }) {
            let path = ["acme", name]
            if issuer.challenges.isEmpty {
                problems.append(.init(path: path + ["challenges"], reason: "at least one of tls-alpn-01, http-01, dns-01"))
            }
            // At least one listed challenge must be one this gateway can answer.
            let answerable = issuer.challenges.contains { challenge in
                switch challenge {
                case .tlsALPN01: return configuration.listeners.contains { $0.protocol == .tls }
                case .http01: return configuration.listeners.contains { $0.protocol == .http }
                case .dns01: return true
                }
            }
            if !issuer.challenges.isEmpty, !answerable {
                problems.append(.init(path: path + ["challenges"], reason: "none can be answered: http-01 needs a listener with protocol: http, tls-alpn-01 a TLS listener"))
            }
            if let roots = issuer.caRoots, let reason = Self.unusableRoots(roots, baseDirectory: configuration.baseDirectory) {
                problems.append(.init(path: path + ["ca_roots"], reason: reason))
            }
            if issuer.challenges.contains(.dns01) {
                if issuer.dnsHook?.first.map({ !$0.hasPrefix("/") }) == true {
                    problems.append(.init(path: path + ["dns_hook"], reason: "the hook's first item must be an absolute path (it runs without a shell, and not relative to the configuration)"))
                } else if issuer.dnsHook?.first == nil {
                    problems.append(.init(path: path + ["dns_hook"], reason: "dns-01 needs dns_hook: a list whose first item is an absolute path (it runs without a shell)"))
                } else if let program = issuer.dnsHook?.first, let reason = ConfigurationRules.unrunnable(program) {
                    problems.append(.init(path: path + ["dns_hook"], reason: reason))
                }
            }
            if let eab = issuer.eab, Base64URL.decode(eab.hmacKey)?.isEmpty != false {
                problems.append(.init(path: path + ["eab", "hmac_key"], reason: "is not base64url (the MAC key as the CA gave it)"))
            }
            if let renewBefore = issuer.renewBefore, !(ConfigurationRules.Ranges.renewBefore.contains(renewBefore.duration)) {
                problems.append(.init(path: path + ["renew_before"], reason: "must be 1h to 365d, not \(renewBefore)"))
            }
        }
        // Only entries with an ACME key have problems here (sorting all of them first cost
        // a tenth of a second at 100,000 entries).
        let acmeEntries = configuration.certificates.filter { $0.value.acme != nil || $0.value.onDemand != nil || $0.value.ask != nil }
        for (name, conf) in acmeEntries.sorted(by: { $0.key < $1.key }) {
            if conf.acme == nil {
                // The entry's own validation says the same (for entries sent through the
                // control plane); here it gets the file's line.
                if conf.onDemand != nil {
                    problems.append(.init(path: ["certificates", name, "on_demand"], reason: CertificateConf.onDemandWithoutACME))
                }
                if conf.ask != nil {
                    problems.append(.init(path: ["certificates", name, "ask"], reason: CertificateConf.askWithoutOnDemand))
                }
            }
            let found = entryProblems(conf, issuers: configuration.acme, unknownIssuerAllowed: issuersElsewhere)
            problems += found.map { .init(path: ["certificates", name] + $0.path, reason: $0.reason) }
        }
        return problems
    }

    /// The problems of one entry that names an ACME CA (none for another entry), each with
    /// its path inside the entry (`acme`, `domains.N`, `is_ca`), given the `acme:` section
    /// in force (the built-in CAs are added).
    static func entryProblems(
        _ conf: CertificateConf, issuers: [String: ACMEIssuerConfiguration], unknownIssuerAllowed: Bool = false
    ) -> [ConfigurationRules.Problem] {
        guard let issuerName = conf.acme else { return [] }
        var problems: [ConfigurationRules.Problem] = []
        let issuer = issuers[issuerName] ?? ACMEIssuerConfiguration.builtIn[issuerName]
        if issuer == nil, !unknownIssuerAllowed {
            let known = (Array(issuers.keys) + ACMEIssuerConfiguration.builtIn.keys).sorted().joined(separator: ", ")
            return [.init(path: ["acme"], reason: "no ACME CA is called \(QuotedValue.quote(issuerName)) (known: \(known))")]
        }
        if conf.isCA == true {
            problems.append(.init(path: ["is_ca"], reason: "an acme entry cannot sign leaves"))
        }
        let domains = conf.domains?.items ?? []
        if conf.ask != nil, conf.onDemand != true {
            problems.append(.init(path: ["ask"], reason: CertificateConf.askWithoutOnDemand))
        }
        if conf.onDemand == true {
            if domains.isEmpty {
                problems.append(.init(path: ["domains"], reason: "an on-demand entry needs the patterns of the names it may obtain (\"*\" for any)"))
            }
            if conf.isDefault == true {
                problems.append(.init(path: ["is_default"], reason: "an on-demand entry serves only the names it obtains; it cannot be the default"))
            }
            if conf.tlsCert != nil || conf.tlsKey != nil {
                problems.append(.init(path: [conf.tlsCert != nil ? "tls_cert" : "tls_key"], reason: "an on-demand entry takes no certificate of its own: one is obtained for each name"))
            }
            if let ask = conf.ask, let reason = OnDemandAsk.problem(with: ask) {
                problems.append(.init(path: ["ask"], reason: reason))
            }
            for (offset, raw) in domains.enumerated() {
                switch NamePattern.parse(raw) {
                case .success(.exact), .success(.wildcard):
                    break  // each name that matches is ordered by itself: no dns-01 needed
                case .success(.any):
                    // Any name a client sends, ordered from the CA: only with an endpoint that
                    // says which are the operator's customers' (Caddy requires the same).
                    if conf.ask == nil {
                        problems.append(.init(path: ["domains", "\(offset)"], reason: "'*' takes any name a client sends: an on-demand entry for every name needs ask (the endpoint that says which names are yours)"))
                    }
                case .success(.ip):
                    problems.append(.init(path: ["domains", "\(offset)"], reason: "\(QuotedValue.quote(raw)) is not a DNS name an ACME CA can validate"))
                case .failure(let failure):
                    problems.append(.init(path: ["domains", "\(offset)"], reason: failure.description))
                }
            }
            return problems
        }
        if domains.isEmpty {
            problems.append(.init(path: ["domains"], reason: "an acme entry needs the names to obtain a certificate for"))
        }
        for (offset, raw) in domains.enumerated() {
            let parsed = NamePattern.parse(raw)
            switch parsed {
            case .success(.exact):
                break
            case .success(.wildcard):
                if let issuer, !issuer.challenges.contains(.dns01) {
                    problems.append(.init(path: ["domains", "\(offset)"], reason: "a wildcard name is validated only by dns-01: add dns-01 to acme.\(issuerName).challenges"))
                }
            case .success(.ip), .success(.any):
                problems.append(.init(path: ["domains", "\(offset)"], reason: "\(QuotedValue.quote(raw)) is not a DNS name an ACME CA can validate"))
            case .failure(let failure):
                // A pending entry is in no set, so the set's validation never sees it.
                problems.append(.init(path: ["domains", "\(offset)"], reason: failure.description))
            }
        }
        return problems
    }

    /// Why `ca_roots` (relative to the configuration's folder) cannot serve as extra roots
    /// for the directory's HTTPS, or nil: it must be a readable file of PEM certificates.
    private static func unusableRoots(_ value: String, baseDirectory: String) -> String? {
        let path = MaterialSource.resolve(path: value, baseDirectory: baseDirectory)
        guard FileManager.default.fileExists(atPath: path) else { return "\(QuotedValue.quote(path, limit: 255)) does not exist" }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            return "\(QuotedValue.quote(path, limit: 255)) cannot be read as text"
        }
        guard let certificates = try? PEMMaterialParser.certificates(fromPEM: text), !certificates.isEmpty else {
            return "\(QuotedValue.quote(path, limit: 255)) holds no PEM certificate"
        }
        return nil
    }
}
