import CertificateKit
import Foundation

/// One row of `certgate check` (and later `ctl list`): public facts only, never a key.
public struct CertificateReportRow: Codable, Sendable, Equatable {
    public var name: String
    public var domains: [String]
    public var notBefore: Date
    public var notAfter: Date
    public var daysLeft: Int
    public var state: CertificateValidity.State
    public var issuer: String
    public var kind: CertificateEntry.Kind
    public var isDefault: Bool
    public var chainCompleted: Bool
    public var chainLength: Int
    public var warnings: [String]

    enum CodingKeys: String, CodingKey {
        case name, domains, issuer, kind, state, warnings
        case notBefore = "not_before"
        case notAfter = "not_after"
        case daysLeft = "days_left"
        case isDefault = "is_default"
        case chainCompleted = "chain_completed"
        case chainLength = "chain_length"
    }

    public init(entry: CertificateEntry, now: Date) {
        let validity = entry.validity(at: now)
        name = entry.name
        domains = entry.patterns.map(\.description)
        notBefore = validity.notBefore
        notAfter = validity.notAfter
        daysLeft = validity.daysLeft
        state = validity.state
        issuer = entry.leaf.issuer
        kind = entry.kind
        isDefault = entry.isDefault
        chainCompleted = entry.chainWasCompleted
        chainLength = entry.servedChainSubjects.count
        warnings = entry.warnings
    }

    /// `static`, `default`, `issuer` or `issuer+default`.
    public var kindLabel: String {
        switch (kind, isDefault) {
        case (.static, false): return "static"
        case (.static, true): return "default"
        case (.issuer, false): return "issuer"
        case (.issuer, true): return "issuer+default"
        }
    }
}

/// What `certgate check` reports: the rows of a valid set, or every error.
public struct CertificateCheckReport: Codable, Sendable {
    public var valid: Bool
    public var certificates: [CertificateReportRow]
    public var errors: [CertificateEntryError]
    /// The set `state_dir` holds, which `certgate run` serves instead of these certificates
    /// until a reload applies them.
    public var storedSet: StoredSetSummary?
    /// Entries obtained by ACME when certgate runs (name → the `acme:` CA), not checked here.
    public var acmeEntries: [String: String] = [:]
    /// Of those, the on-demand entries (name → the `acme:` CA): a certificate per name that
    /// their patterns take, at its first handshake.
    public var onDemandEntries: [String: String] = [:]
    /// With `check --connect`: what the fleet's database said, or why it could not be used
    /// (the configuration may still be valid: `check` then exits 1 for the database).
    public var sharedState: String?
    public var sharedStateError: String?

    enum CodingKeys: String, CodingKey {
        case valid, certificates, errors
        case storedSet = "stored_set"
        case acmeEntries = "acme_entries"
        case onDemandEntries = "on_demand_entries"
        case sharedState = "shared_state"
        case sharedStateError = "shared_state_error"
    }

    public init(valid: Bool, certificates: [CertificateReportRow], errors: [CertificateEntryError]) {
        self.valid = valid
        self.certificates = certificates
        self.errors = errors
    }

    /// Validates the configuration's certificates as a set, exactly as serving would.
    /// Validates the set `certgate run` would serve: `create_if_missing` entries whose files
    /// do not exist yet are judged on the material run would create for them.
    public static func check(_ configuration: GatewayConfiguration, now: Date) -> CertificateCheckReport {
        let certificates: [String: CertificateConf]
        do {
            certificates = try MissingCertificateFiles.asRunWillRead(configuration)
        } catch {
            return CertificateCheckReport(valid: false, certificates: [], errors: [
                CertificateEntryError(entry: error.entry, field: "create_if_missing", reason: error.reason),
            ])
        }
        let acme = certificates.filter { ACMEEntries.isUnmaterialized($0.value) }
        do {
            let change = try CertificateSet.build(
                from: acme.isEmpty ? certificates : certificates.filter { acme[$0.key] == nil }, context: configuration.buildContext(now: now))
            let rows = change.set.sortedEntries.map { CertificateReportRow(entry: $0, now: now) }
            // Another core tears the set down while the report is printed.
            BackgroundRelease.release(change)
            var report = CertificateCheckReport(valid: true, certificates: rows, errors: [])
            report.acmeEntries = acme.compactMapValues(\.acme)
            report.onDemandEntries = acme.filter { $0.value.isOnDemand }.compactMapValues(\.acme)
            return report
        } catch {
            return CertificateCheckReport(valid: false, certificates: [], errors: error.errors)
        }
    }
}
