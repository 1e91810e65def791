import CertificateKit
import ControlProtocol
import Foundation
import GRPCCore
import SwiftProtobuf

// The one mapping between certgate's values and the messages of
// `certgate.control.v1` (Protos/certgate/control/v1/control.proto), used by the control
// service and by `certgate ctl`. Nothing outside this folder builds a protobuf message.

extension Certgate_Control_V1_CertificateEntry {
    /// An entry to send: `conf`'s fields with the certificate and key as their PEM text
    /// (`ctl` reads files on its own machine; the gateway may not see its paths).
    public init(name: String, conf: CertificateConf, certificatePEM: String, keyPEM: String?) {
        self.init()
        self.name = name
        tlsCert = certificatePEM
        tlsKey = keyPEM ?? ""
        domains = conf.domains?.items ?? []
        isDefault = conf.isDefault ?? false
        isCa = conf.isCA ?? false
        acme = conf.acme ?? ""
        bufferDays = UInt32(clamping: conf.bufferDays ?? 0)
        remark = conf.remark ?? ""
        leafNames = conf.leafNames?.rawValue ?? ""
        leafValidityDays = UInt32(clamping: conf.leafValidityDays ?? 0)
        onDemand = conf.onDemand ?? false
        ask = conf.ask ?? ""
    }

    /// The entry as configuration: an empty string or zero is an absent field.
    /// - Throws: the entry's error when `leaf_names` is neither `exact` nor `wildcard`.
    public func conf() throws(CertificateEntryError) -> CertificateConf {
        var parsedLeafNames: LocalAuthority.LeafNames?
        if !leafNames.isEmpty {
            guard let parsed = LocalAuthority.LeafNames(rawValue: leafNames) else {
                throw CertificateEntryError(
                    entry: name, field: "leaf_names", reason: "must be exact or wildcard, not \(QuotedValue.quote(leafNames))")
            }
            parsedLeafNames = parsed
        }
        return CertificateConf(
            domains: domains.isEmpty ? nil : DomainList(domains),
            tlsCert: tlsCert.isEmpty ? nil : tlsCert,
            tlsKey: tlsKey.isEmpty ? nil : tlsKey,
            isDefault: isDefault ? true : nil,
            isCA: isCa ? true : nil,
            acme: acme.isEmpty ? nil : acme,
            bufferDays: bufferDays == 0 ? nil : Int(bufferDays),
            remark: remark.isEmpty ? nil : remark,
            leafNames: parsedLeafNames,
            leafValidityDays: leafValidityDays == 0 ? nil : Int(leafValidityDays),
            onDemand: onDemand ? true : nil,
            ask: ask.isEmpty ? nil : ask)
    }
}

extension Certgate_Control_V1_CertificateSummary {
    /// An `acme` entry's CA, status, renewal time and last error.
    mutating func setACME(_ summary: ACMEManager.Summary) {
        acme = summary.conf.acme ?? ""
        onDemand = summary.conf.isOnDemand
        ask = summary.conf.ask ?? ""
        acmeStatus = summary.conf.isOnDemand ? "on_demand" : summary.status?.state.rawValue ?? (summary.obtained ? "valid" : "pending")
        if let renewAt = summary.status?.renewAt { self.renewAt = Google_Protobuf_Timestamp(date: renewAt) }
        lastError = summary.status?.lastError ?? ""
        if summary.status?.state == .failed, let next = summary.status?.nextAttempt { nextAttempt = Google_Protobuf_Timestamp(date: next) }
    }
}

extension Certgate_Control_V1_EntryError {
    init(_ error: CertificateEntryError) {
        self.init()
        entry = error.entry
        field = error.field
        reason = error.reason
    }
}

extension Certgate_Control_V1_UpdateResult {
    init(_ outcome: CertificateUpdateOutcome) {
        self.init()
        generation = outcome.generation
        added = outcome.added
        changed = outcome.changed
        removed = outcome.removed
        dryRun = outcome.dryRun
        errors = outcome.errors.map(Certgate_Control_V1_EntryError.init)
        warnings = outcome.warnings.map(Certgate_Control_V1_EntryError.init)
    }
}

extension Certgate_Control_V1_Event {
    init(_ event: GatewayEvent) {
        self.init()
        switch event {
        case .setChanged(let change):
            time = Google_Protobuf_Timestamp(date: change.time)
            setChanged = .with {
                $0.generation = change.generation
                $0.source = change.source.rawValue
                $0.added = change.added
                $0.changed = change.changed
                $0.removed = change.removed
                $0.node = change.node ?? ""
            }
        case .validityChanged(let change):
            time = Google_Protobuf_Timestamp(date: change.time)
            validityChanged = .with {
                $0.entry = change.entry
                $0.previousState = change.previousState?.rawValue ?? ""
                $0.state = change.state.rawValue
                $0.daysLeft = Int32(clamping: change.daysLeft)
                $0.notAfter = Google_Protobuf_Timestamp(date: change.notAfter)
            }
        case .acmeChanged(let change):
            time = Google_Protobuf_Timestamp(date: change.time)
            acmeChanged = .with {
                $0.entry = change.entry
                $0.acme = change.acme
                $0.result = change.result.rawValue
                $0.reason = change.reason ?? ""
                if let notAfter = change.notAfter { $0.notAfter = Google_Protobuf_Timestamp(date: notAfter) }
                if let renewAt = change.renewAt { $0.renewAt = Google_Protobuf_Timestamp(date: renewAt) }
                $0.failures = UInt32(clamping: change.failures)
                if let next = change.nextAttempt { $0.nextAttempt = Google_Protobuf_Timestamp(date: next) }
            }
        }
    }
}

extension Certgate_Control_V1_Status {
    init(_ status: GatewayStatus) {
        self.init()
        generation = status.generation
        certificates = UInt32(clamping: status.certificates)
        issuedCached = UInt32(clamping: status.issuedCached)
        listeners = status.listeners.map { listener in
            .with {
                $0.name = listener.name
                $0.address = listener.address
            }
        }
        lastUpdate = Google_Protobuf_Timestamp(date: status.lastUpdate)
        lastUpdateSource = status.lastUpdateSource.rawValue
        if let onDemand = status.onDemand {
            let limits = onDemand.configuration
            self.onDemand = .with {
                $0.entries = UInt32(clamping: onDemand.entries)
                $0.stored = UInt32(clamping: onDemand.stored)
                $0.cached = UInt32(clamping: onDemand.cached)
                $0.ordering = UInt32(clamping: onDemand.ordering)
                $0.refusedNames = UInt32(clamping: onDemand.refusedNames)
                $0.handshakeWait = limits.handshakeWait.description
                $0.maxConcurrent = UInt32(clamping: limits.maxConcurrent)
                $0.ordersPerMinute = UInt32(clamping: limits.ordersPerMinute)
                $0.burst = UInt32(clamping: limits.burst)
                $0.perClientPerHour = UInt32(clamping: limits.perClientPerHour)
                $0.maxCertificates = UInt32(clamping: limits.maxCertificates)
                $0.idleTimeout = limits.idleTimeout.description
                $0.askTimeout = limits.askTimeout.description
                $0.askCache = limits.askCache.description
                $0.failureBackoff = limits.failureBackoff.description
            }
        }
        if let shared = status.sharedState {
            sharedState = .with {
                $0.node = shared.node
                $0.fleetGeneration = shared.fleetGeneration
                $0.connected = shared.connected
                $0.reason = shared.reason ?? ""
                $0.fleetGenerationKnown = shared.fleetGenerationKnown
            }
        }
    }
}

extension RPCError {
    /// An update or a reload that changed nothing, as the status code scripts branch on:
    /// invalid input (entries, the file) → INVALID_ARGUMENT with one `entry: field:
    /// reason` (or `file:line: key: reason`) line per error; a compare-and-swap miss →
    /// FAILED_PRECONDITION; a state that cannot commit → UNAVAILABLE.
    init(_ failure: ReloadFailure) {
        switch failure {
        case .configuration(let errors):
            self.init(code: .invalidArgument, message: errors.map(\.description).joined(separator: "\n"))
        case .update(let failure):
            switch failure {
            case .invalid(let errors):
                self.init(code: .invalidArgument, message: errors.map(\.description).joined(separator: "\n"))
            case .generationMismatch:
                self.init(code: .failedPrecondition, message: failure.description)
            case .persistence, .unavailable:
                self.init(code: .unavailable, message: failure.description)
            }
        }
    }

    /// An entry of a request that is not even configuration (see
    /// `Certgate_Control_V1_CertificateEntry.conf()`).
    init(_ error: CertificateEntryError) {
        self.init(code: .invalidArgument, message: "\(QuotedValue.quote(error.entry, limit: 253)): \(error.field): \(error.reason)")
    }
}

extension Certgate_Control_V1_OnDemandCertificate {
    init(_ listed: OnDemandCertificates.Listed, now: Date) {
        self.init()
        name = listed.host
        entry = listed.entry
        acme = listed.issuer
        notBefore = Google_Protobuf_Timestamp(date: listed.notBefore)
        notAfter = Google_Protobuf_Timestamp(date: listed.notAfter)
        daysLeft = Int32(clamping: Int((listed.notAfter.timeIntervalSince(now) / 86_400).rounded(.down)))
        lastHandshake = Google_Protobuf_Timestamp(date: listed.lastUsed)
        renewAt = Google_Protobuf_Timestamp(date: listed.renewAt)
        cached = listed.cached
        lastError = listed.lastError ?? ""
    }
}
