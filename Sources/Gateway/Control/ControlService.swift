import CertificateKit
import ControlProtocol
import Foundation
import GRPCCore
import SwiftProtobuf

/// `certgate.control.v1.CertificateControl`: every update and reload goes through the
/// update pipeline (one at a time, see ``CertificateUpdater``); reads are of the current
/// set; never a private key. Messages are mapped in `ControlMessages.swift`.
struct ControlService: Certgate_Control_V1_CertificateControl.SimpleServiceProtocol {
    let pipeline: UpdatePipeline
    let acme: ACMEManager
    let onDemand: OnDemandCertificates
    let store: CertificateKit.CertificateStore
    let events: EventHub
    let status: @Sendable () -> GatewayStatus
    let now: @Sendable () -> Date
    /// Requests larger than this get RESOURCE_EXHAUSTED.
    let maxMessageBytes: Int

    private func checkSize(_ message: some SwiftProtobuf.Message) throws {
        let size = (try? message.serializedBytes() as [UInt8])?.count ?? 0
        if size > maxMessageBytes {
            throw RPCError(code: .resourceExhausted, message: "request of \(size) bytes is over the limit of \(maxMessageBytes) (control.max_message_bytes)")
        }
    }

    /// The request's entries by name; a name given twice, or an entry that is not
    /// configuration, is INVALID_ARGUMENT naming it.
    private static func confs(_ entries: [Certgate_Control_V1_CertificateEntry]) throws(RPCError) -> [String: CertificateConf] {
        var confs: [String: CertificateConf] = [:]
        for entry in entries {
            guard confs[entry.name] == nil else {
                throw RPCError(CertificateEntryError(entry: entry.name, field: "name", reason: "given twice"))
            }
            do {
                confs[entry.name] = try entry.conf()
            } catch {
                throw RPCError(error)
            }
        }
        return confs
    }

    func applyCertificateSet(request: Certgate_Control_V1_ApplyCertificateSetRequest, context: ServerContext) async throws -> Certgate_Control_V1_UpdateResult {
        try checkSize(request)
        return try await run(.init(
            change: .replace(Self.confs(request.entries)),
            expectedGeneration: request.hasExpectedGeneration ? request.expectedGeneration : nil,
            dryRun: request.dryRun, policy: request.policy == .keepLastGood ? .keepLastGood : .reject, source: .control))
    }

    func updateCertificates(request: Certgate_Control_V1_UpdateCertificatesRequest, context: ServerContext) async throws -> Certgate_Control_V1_UpdateResult {
        try checkSize(request)
        return try await run(.init(
            change: .batch(upserts: Self.confs(request.upsert), deletions: request.delete),
            expectedGeneration: request.hasExpectedGeneration ? request.expectedGeneration : nil,
            dryRun: request.dryRun, policy: request.policy == .keepLastGood ? .keepLastGood : .reject, source: .control))
    }

    func listCertificates(request: Certgate_Control_V1_ListCertificatesRequest, context: ServerContext) async throws -> Certgate_Control_V1_ListCertificatesResponse {
        let snapshot = store.current
        let now = self.now()
        let acme = Dictionary(uniqueKeysWithValues: self.acme.summaries.map { ($0.name, $0) })
        var response = Certgate_Control_V1_ListCertificatesResponse.with { response in
            response.generation = snapshot.generation
            response.certificates = snapshot.set.sortedEntries.map { entry in
                let row = CertificateReportRow(entry: entry, now: now)
                var summary = Certgate_Control_V1_CertificateSummary.with {
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
                if let acme = acme[entry.name] { summary.setACME(acme) }
                return summary
            }
            // ACME entries still waiting for their first certificate are in no set.
            for pending in acme.values.sorted(by: { $0.name < $1.name }) where snapshot.set.entries[pending.name] == nil {
                var summary = Certgate_Control_V1_CertificateSummary.with {
                    $0.name = pending.name
                    $0.domains = pending.conf.domains?.items ?? []
                }
                summary.setACME(pending)
                response.certificates.append(summary)
            }
        }
        if request.onDemand {
            do {
                response.onDemand = try await onDemand.listing(now: now).map { Certgate_Control_V1_OnDemandCertificate($0, now: now) }
            } catch {
                throw RPCError(code: .unavailable, message: "the on-demand certificates cannot be read: \(describeStoreFailure(error))")
            }
        }
        return response
    }

    func renewCertificate(request: Certgate_Control_V1_RenewCertificateRequest, context: ServerContext) async throws -> Certgate_Control_V1_RenewCertificateResponse {
        do {
            let renewed = try await acme.renew(request.name)
            let renewAt = acme.status(of: request.name)?.renewAt
            return .with {
                $0.name = request.name
                $0.generation = store.current.generation
                $0.notAfter = Google_Protobuf_Timestamp(date: renewed.notAfter)
                if let renewAt { $0.renewAt = Google_Protobuf_Timestamp(date: renewAt) }
            }
        } catch {
            switch error {
            case .notACMEEntry:
                if acme.wantedEntries[request.name]?.isOnDemand == true {
                    throw RPCError(code: .failedPrecondition, message: "\(QuotedValue.quote(request.name, limit: 253)) is an on-demand entry: its certificates, one per name, are renewed as they are served (ctl list --on-demand)")
                }
                // A name an entry of the set (or an acme entry still waiting) claims is that
                // entry's: only names no entry claims are the on-demand entries'.
                if let entry = claimingEntry(request.name) {
                    throw RPCError(code: .notFound, message: "no acme entry named \(QuotedValue.quote(request.name, limit: 253)); the name is served by entry \(QuotedValue.quote(entry, limit: 253))")
                }
                if let entry = onDemand.entryTaking(request.name) {
                    throw RPCError(code: .failedPrecondition, message: "\(QuotedValue.quote(request.name, limit: 253)) is a name of the on-demand entry \(QuotedValue.quote(entry, limit: 253)): its certificate is renewed as it is served (ctl list --on-demand)")
                }
                throw RPCError(code: .notFound, message: "no acme entry named \(QuotedValue.quote(request.name, limit: 253))")
            case .failed(let reason):
                let serving = store.current.set.entries[request.name] != nil
                    ? "the current certificate keeps serving"
                    : "it has no certificate yet; the default entry answers its names"
                throw RPCError(code: .unavailable, message: "\(request.name): \(reason); \(serving)")
            case .timedOut:
                throw RPCError(code: .deadlineExceeded, message: "\(request.name): the order did not finish in time; it goes on")
            }
        }
    }

    /// The entry that claims `text` by its own names: an entry of the served set (exact or
    /// wildcard; an issuer's own patterns too), or an acme entry waiting for its first
    /// certificate whose domains hold it.
    private func claimingEntry(_ text: String) -> String? {
        guard let name = ServerName.normalize(text) else { return nil }
        if let match = store.current.set.lookup(serverName: name.text, localAddress: nil), match.kind == .exact || match.kind == .wildcard {
            return match.entry.name
        }
        return acme.wantedEntries.filter { !$0.value.isOnDemand && ACMEEntries.orderNames($0.value).contains(name.text) }.map(\.key).min()
    }

    func getStatus(request: Certgate_Control_V1_GetStatusRequest, context: ServerContext) async throws -> Certgate_Control_V1_Status {
        Certgate_Control_V1_Status(status())
    }

    /// Errors exactly as an update's: INVALID_ARGUMENT with one `entry: field: reason`
    /// line per invalid entry (or `file:line: key: reason` per configuration error).
    func reloadConfig(request: Certgate_Control_V1_ReloadConfigRequest, context: ServerContext) async throws -> Certgate_Control_V1_UpdateResult {
        switch await pipeline.reload(source: .control) {
        case .success(let outcome): return Certgate_Control_V1_UpdateResult(outcome)
        case .failure(let failure): throw RPCError(failure)
        }
    }

    func watchEvents(request: Certgate_Control_V1_WatchEventsRequest, response: RPCWriter<Certgate_Control_V1_Event>, context: ServerContext) async throws {
        for await event in events.subscribe() {
            try await response.write(Certgate_Control_V1_Event(event))
        }
    }

    private func run(_ request: CertificateUpdateRequest) async throws -> Certgate_Control_V1_UpdateResult {
        do {
            return Certgate_Control_V1_UpdateResult(try await pipeline.update(request))
        } catch {
            throw RPCError(ReloadFailure.update(error))
        }
    }
}
