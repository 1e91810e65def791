import CertificateKit
import ControlProtocol
import Dispatch
import Foundation
import GRPCCore
import SwiftProtobuf

/// `certgate.control.v1.CertificateControl`: every update goes through the one update
/// transaction (``CertificateUpdater``); reads are of the current set; never a private key.
struct ControlService: Certgate_Control_V1_CertificateControl.SimpleServiceProtocol {
    let updater: CertificateUpdater
    let store: CertificateKit.CertificateStore
    let events: EventHub
    let status: @Sendable () -> Certgate_Control_V1_Status
    let reload: @Sendable () -> GatewayServer.ReloadOutcome
    let now: @Sendable () -> Date
    /// Requests larger than this get RESOURCE_EXHAUSTED.
    let maxMessageBytes: Int
    /// Where updates and reloads run (serial, off the cooperative pool).
    let updates: DispatchQueue

    private func checkSize(_ message: some SwiftProtobuf.Message) throws {
        let size = (try? message.serializedBytes() as [UInt8])?.count ?? 0
        if size > maxMessageBytes {
            throw RPCError(code: .resourceExhausted, message: "request of \(size) bytes is over the limit of \(maxMessageBytes) (control.max_message_bytes)")
        }
    }

    func applyCertificateSet(request: Certgate_Control_V1_ApplyCertificateSetRequest, context: ServerContext) async throws -> Certgate_Control_V1_UpdateResult {
        try checkSize(request)
        var confs: [String: CertificateConf] = [:]
        for entry in request.entries {
            guard confs[entry.name] == nil else {
                throw RPCError(code: .invalidArgument, message: "\(entry.name): name: given twice")
            }
            confs[entry.name] = try Self.conf(entry)
        }
        return try await run(.init(
            change: .replace(confs), expectedGeneration: request.hasExpectedGeneration ? request.expectedGeneration : nil,
            dryRun: request.dryRun, policy: request.policy == .keepLastGood ? .keepLastGood : .reject, source: .control))
    }

    func updateCertificates(request: Certgate_Control_V1_UpdateCertificatesRequest, context: ServerContext) async throws -> Certgate_Control_V1_UpdateResult {
        try checkSize(request)
        var upserts: [String: CertificateConf] = [:]
        for entry in request.upsert {
            guard upserts[entry.name] == nil else {
                throw RPCError(code: .invalidArgument, message: "\(entry.name): name: given twice")
            }
            upserts[entry.name] = try Self.conf(entry)
        }
        return try await run(.init(
            change: .batch(upserts: upserts, deletions: request.delete),
            expectedGeneration: request.hasExpectedGeneration ? request.expectedGeneration : nil,
            dryRun: request.dryRun, policy: request.policy == .keepLastGood ? .keepLastGood : .reject, source: .control))
    }

    func listCertificates(request: Certgate_Control_V1_ListCertificatesRequest, context: ServerContext) async throws -> Certgate_Control_V1_ListCertificatesResponse {
        let snapshot = store.current
        let now = self.now()
        return .with { response in
            response.generation = snapshot.generation
            response.certificates = snapshot.set.sortedEntries.map { entry in
                let row = CertificateReportRow(entry: entry, now: now)
                return .with {
                    $0.name = row.name
                    $0.domains = row.domains
                    $0.notBefore = Google_Protobuf_Timestamp(date: row.notBefore)
                    $0.notAfter = Google_Protobuf_Timestamp(date: row.notAfter)
                    $0.daysLeft = Int32(clamping: row.daysLeft)
                    $0.state = row.state.rawValue
                    $0.issuer = row.issuer
                    $0.kind = row.kind.rawValue
                    $0.isDefault = row.isDefault
                    $0.chainSubjects = entry.servedChainSubjects
                    $0.sha256Fingerprint = entry.sha256Fingerprint
                    $0.warnings = row.warnings
                }
            }
        }
    }

    func getStatus(request: Certgate_Control_V1_GetStatusRequest, context: ServerContext) async throws -> Certgate_Control_V1_Status {
        status()
    }

    func reloadConfig(request: Certgate_Control_V1_ReloadConfigRequest, context: ServerContext) async throws -> Certgate_Control_V1_UpdateResult {
        switch await runBlocking(on: updates, reload) {
        case .applied(let outcome):
            return .with {
                $0.generation = outcome.generation
                $0.added = outcome.added
                $0.changed = outcome.changed
                $0.removed = outcome.removed
                $0.warnings = outcome.warnings.map(Self.entryError)
            }
        case .rejected(let reasons):
            throw RPCError(code: .invalidArgument, message: reasons.joined(separator: "\n"))
        case .notPersisted(let reason):
            throw RPCError(code: .unavailable, message: reason)
        }
    }

    func watchEvents(request: Certgate_Control_V1_WatchEventsRequest, response: RPCWriter<Certgate_Control_V1_Event>, context: ServerContext) async throws {
        for await event in events.subscribe() {
            try await response.write(event)
        }
    }

    private func run(_ request: CertificateUpdateRequest) async throws -> Certgate_Control_V1_UpdateResult {
        let updater = self.updater
        let result = await runBlocking(on: updates) {
            Result { () throws(CertificateUpdateFailure) -> CertificateUpdateOutcome in try updater.apply(request) }
        }
        do {
            let outcome = try result.get()
            return .with {
                $0.generation = outcome.generation
                $0.added = outcome.added
                $0.changed = outcome.changed
                $0.removed = outcome.removed
                $0.dryRun = outcome.dryRun
                $0.errors = outcome.errors.map(Self.entryError)
                $0.warnings = outcome.warnings.map(Self.entryError)
            }
        } catch {
            switch error {
            case .invalid(let errors):
                throw RPCError(code: .invalidArgument, message: errors.map(\.description).joined(separator: "\n"))
            case .generationMismatch:
                throw RPCError(code: .failedPrecondition, message: error.description)
            case .persistence:
                throw RPCError(code: .unavailable, message: error.description)
            }
        }
    }

    /// The entry as configuration; a `leaf_names` that is neither `exact` nor `wildcard` is
    /// INVALID_ARGUMENT naming the entry.
    static func conf(_ entry: Certgate_Control_V1_CertificateEntry) throws(RPCError) -> CertificateConf {
        var leafNames: LocalAuthority.LeafNames?
        if !entry.leafNames.isEmpty {
            guard let parsed = LocalAuthority.LeafNames(rawValue: entry.leafNames) else {
                throw RPCError(code: .invalidArgument, message: "\(QuotedValue.quote(entry.name, limit: 253)): leaf_names: must be exact or wildcard, not \(QuotedValue.quote(entry.leafNames))")
            }
            leafNames = parsed
        }
        return CertificateConf(
            domains: entry.domains.isEmpty ? nil : DomainList(entry.domains),
            tlsCert: entry.tlsCert.isEmpty ? nil : entry.tlsCert,
            tlsKey: entry.tlsKey.isEmpty ? nil : entry.tlsKey,
            isDefault: entry.isDefault ? true : nil,
            isCA: entry.isCa ? true : nil,
            acme: entry.acme.isEmpty ? nil : entry.acme,
            bufferDays: entry.bufferDays == 0 ? nil : Int(entry.bufferDays),
            remark: entry.remark.isEmpty ? nil : entry.remark,
            leafNames: leafNames,
            leafValidityDays: entry.leafValidityDays == 0 ? nil : Int(entry.leafValidityDays))
    }

    static func entryError(_ error: CertificateEntryError) -> Certgate_Control_V1_EntryError {
        .with {
            $0.entry = error.entry
            $0.field = error.field
            $0.reason = error.reason
        }
    }
}
