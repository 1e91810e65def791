import CertificateKit

/// `certificates:` entries that name an ACME CA (`acme: NAME`): the set holds them with the
/// certificate obtained for them; until there is one, with the certificate they bring
/// (`tls_cert`/`tls_key`, as pingap's configurations do), or not at all (the default
/// answers their names meanwhile).
enum ACMEEntries {
    /// Whether `conf` is an ACME entry waiting to be given its obtained material.
    static func isUnmaterialized(_ conf: CertificateConf) -> Bool {
        conf.acme != nil && conf.tlsCert == nil && conf.tlsKey == nil
    }

    /// The entries the set can hold now, and the ACME entries that have no certificate yet.
    /// An ACME entry with a stored certificate gets it inline, even when its domains or its
    /// CA changed since: it keeps serving while the new order runs (the manager orders again
    /// when the stored certificate is for other names or from another CA).
    static func materialize(
        _ confs: [String: CertificateConf], obtained: [String: StoredACMECertificate]
    ) -> (servable: [String: CertificateConf], pending: [String: CertificateConf]) {
        // The usual file has no acme entry: nothing to copy.
        guard confs.values.contains(where: { $0.acme != nil }) else { return (confs, [:]) }
        var servable: [String: CertificateConf] = [:]
        var pending: [String: CertificateConf] = [:]
        for (name, conf) in confs {
            if conf.isOnDemand {
                pending[name] = conf  // never in a set: its certificates are per name (OnDemandCertificates)
            } else if conf.acme != nil, let stored = obtained[name] {
                servable[name] = with(conf, stored)
            } else if isUnmaterialized(conf) {
                pending[name] = conf
            } else {
                servable[name] = conf
            }
        }
        return (servable, pending)
    }

    /// The entry with its obtained chain and key, inline.
    static func with(_ conf: CertificateConf, _ stored: StoredACMECertificate) -> CertificateConf {
        var materialized = conf
        materialized.tlsCert = stored.chainPEM
        materialized.tlsKey = stored.keyPEM
        return materialized
    }

    /// The acme entries wanted after `change` (see ``ACMEManager/updated(by:keepingPending:)``),
    /// as configured (no material).
    static func applying(_ change: CertificateUpdateRequest.Change, to wanted: [String: CertificateConf]) -> [String: CertificateConf] {
        switch change {
        case .replace(let confs):
            return confs.filter { $0.value.acme != nil }.mapValues(unmaterialized)
        case .batch(let upserts, let deletions):
            var next = wanted
            for name in deletions { next[name] = nil }
            for (name, conf) in upserts { next[name] = conf.acme == nil ? nil : unmaterialized(conf) }
            return next
        }
    }

    /// An entry without the material it was given (as wanted entries are kept).
    static func unmaterialized(_ conf: CertificateConf) -> CertificateConf {
        var conf = conf
        conf.tlsCert = nil
        conf.tlsKey = nil
        return conf
    }

    /// The names an entry is ordered for: its domains, lower case, sorted.
    static func orderNames(_ conf: CertificateConf) -> [String] {
        Array(Set((conf.domains?.items ?? []).map { $0.lowercased() })).sorted()
    }
}
