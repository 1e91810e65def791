import ACME
import CertificateKit
import Foundation
import Logging
import Metrics
import Synchronization
import X509

/// Obtains and renews the certificates of `acme` entries (DESIGN "Obtaining certificates").
///
/// The update pipeline asks it to ``materialize(_:)`` every set it builds (an entry with a
/// stored certificate gets it inline; one without stays out, pending) and tells it, after
/// each commit, which entries want a certificate (``updated(by:)``). Its loop orders what
/// is missing, stale (its domains or CA changed) or due for renewal, one entry at a time,
/// stores the result in the state and commits it through the same update transaction as
/// every other change (source `acme`). A failure backs off (1 min doubling to 1 day) while
/// the current certificate, if any, keeps serving.
final class ACMEManager: OnDemandOrdering {
    /// An entry's ACME state, for logs and `ctl`.
    struct Status: Sendable, Equatable {
        enum State: String, Sendable { case pending, valid, renewing, failed }
        var state: State
        var lastError: String?
        var renewAt: Date?
        var failures = 0
        var nextAttempt: Date?
        /// When an obtained certificate was last committed to the set.
        var committedAt: Date?
        /// The stored certificate could not be committed: the loop commits it again (no new
        /// order) once `nextAttempt` has passed.
        var uncommitted = false
        /// The uncommitted certificate replaces one the entry served (for the event).
        var uncommittedRenewal = false
        /// When to ask the CA's ARI for the certificate's renewal window (again); nil: at
        /// the next turn of the loop.
        var renewalInfoCheck: Date?
    }

    /// An entry for listings: its CA, status and certificate dates.
    struct Summary: Sendable, Equatable {
        var name: String
        var conf: CertificateConf
        var status: Status?
        var obtained: Bool
    }

    /// Why ``renew(_:timeout:)`` did not renew.
    enum RenewFailure: Error, Equatable {
        case notACMEEntry
        case failed(String)
        case timedOut
    }

    /// Commits an obtained certificate as the entry's new version; returns why not, if not.
    typealias Commit = @Sendable (_ name: String, _ conf: CertificateConf) async -> String?

    private struct State {
        var issuers: [String: ACMEIssuerConfiguration]
        var baseDirectory: String
        /// Every entry that wants a certificate, as configured (no inline material).
        var wanted: [String: CertificateConf] = [:]
        var obtained: [String: StoredACMECertificate]
        var status: [String: Status] = [:]
        var clients: [String: ACMEClient] = [:]
        var transports: [HTTPClientTransport] = []
        var renewRequested: Set<String> = []
    }

    private let state: Mutex<State>
    private let store: (any ACMEStore)?
    /// Store calls block (SQLite, or the fleet's PostgreSQL): made here, off the cooperative pool.
    private let storeQueue = DispatchQueue(label: "certgate.acme.store")
    private let responses: ChallengeResponses
    /// In a fleet: where challenge answers are shared with the other nodes.
    private let sharedChallenges: FleetChallenges?
    private let logger: Logger
    private let commit = Mutex<Commit?>(nil)
    private let events = Mutex<EventHub?>(nil)
    private let loop = Mutex<Task<Void, Never>?>(nil)
    private let onDemandObserver = Mutex<(@Sendable ([String: CertificateConf]) -> Void)?>(nil)
    /// Wakes the loop when an entry starts wanting a certificate, or one is to be renewed now.
    private let wakeup = LoopWakeup()

    /// - Throws: the state cannot be read.
    init(
        configuration: GatewayConfiguration, store: (any ACMEStore)?, responses: ChallengeResponses, sharedChallenges: FleetChallenges? = nil,
        logger: Logger
    ) throws(GatewayStartupError) {
        var obtained: [String: StoredACMECertificate] = [:]
        do {
            obtained = try store?.acmeCertificates() ?? [:]
        } catch let error as SharedStateError where error.unreachable {
            // A fleet's database away at start: the set (the local snapshot) still serves the
            // certificates obtained; renewals wait for the database (its order lock).
            logger.warning("the fleet's ACME state cannot be read yet; renewals wait for the database", metadata: ["reason": "\(error.description)"])
        } catch {
            throw GatewayStartupError(reasons: [describeStoreFailure(error)])
        }
        self.state = Mutex(State(issuers: configuration.acme, baseDirectory: configuration.baseDirectory, obtained: obtained))
        self.store = store
        self.responses = responses
        self.sharedChallenges = sharedChallenges
        self.logger = logger
    }

    // MARK: - The update pipeline's side

    /// The entries a set can hold now (see ``ACMEEntries/materialize(_:obtained:)``).
    func materialize(_ confs: [String: CertificateConf]) -> (servable: [String: CertificateConf], pending: [String: CertificateConf]) {
        let obtained = state.withLock { $0.obtained }
        return ACMEEntries.materialize(confs, obtained: obtained)
    }

    /// After a commit: the entries that now want a certificate. `keepingPending`: a whole
    /// set followed from the fleet replaces the served entries, but entries of this node
    /// still waiting for a first certificate (in no set yet) stay wanted.
    func updated(by change: CertificateUpdateRequest.Change, keepingPending: Bool = false) {
        state.withLock { state in
            let pending = keepingPending ? state.wanted.filter { name, _ in
                guard case .replace(let confs) = change else { return false }
                return state.obtained[name] == nil && confs[name] == nil
            } : [:]
            state.wanted = ACMEEntries.applying(change, to: state.wanted).merging(pending) { served, _ in served }
            for name in state.status.keys where state.wanted[name] == nil { state.status[name] = nil }
            // The commit removed their certificates from the state too (an entry that is no
            // longer an acme entry takes its key with it).
            for name in state.obtained.keys where state.wanted[name] == nil { state.obtained[name] = nil }
        }
        if let observer = onDemandObserver.withLock({ $0 }) {
            observer(state.withLock { $0.wanted.filter { $0.value.isOnDemand } })
        }
        wakeup.signal()
    }

    /// A reload's `acme:` section (orders from now on use it).
    func replaceIssuers(_ issuers: [String: ACMEIssuerConfiguration]) {
        state.withLock { state in
            state.issuers = issuers
            state.clients = [:]  // a changed directory, key binding or roots needs a new client
        }
        wakeup.signal()
    }

    /// Renews `name` at the next turn of the loop (`ctl renew`). False when it is not an
    /// ACME entry.
    func renewNow(_ name: String) -> Bool {
        let known = state.withLock { state in
            guard let conf = state.wanted[name], !conf.isOnDemand else { return false }
            state.renewRequested.insert(name)
            state.status[name]?.nextAttempt = nil
            return true
        }
        if known { wakeup.signal() }
        return known
    }

    /// Every entry that wants a certificate, as configured.
    var wantedEntries: [String: CertificateConf] { state.withLock { $0.wanted } }

    func status(of name: String) -> Status? {
        state.withLock { $0.status[name] }
    }

    /// Every entry that wants a certificate, by name.
    var summaries: [Summary] {
        state.withLock { state in
            state.wanted.sorted { $0.key < $1.key }.map { name, conf in
                Summary(name: name, conf: conf, status: state.status[name], obtained: state.obtained[name] != nil)
            }
        }
    }

    /// The renewal time of each entry with a certificate (`certgate_certificate_renew_at_timestamp_seconds`).
    var renewalTimes: [String: Date] {
        state.withLock { $0.status.compactMapValues(\.renewAt) }
    }

    /// Orders a new certificate for `name` now and waits until it is committed (or the
    /// order failed, or `timeout` passed). Returns the new certificate.
    func renew(_ name: String, timeout: Duration = .seconds(300)) async throws(RenewFailure) -> StoredACMECertificate {
        let started = Date()
        let failuresBefore = state.withLock { $0.status[name]?.failures ?? 0 }
        guard renewNow(name) else { throw .notACMEEntry }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (status, obtained) = state.withLock { ($0.status[name], $0.obtained[name]) }
            if let committed = status?.committedAt, committed >= started, let obtained { return obtained }
            if let status, status.state == .failed, status.failures > failuresBefore {
                throw .failed(status.lastError ?? "the order failed")
            }
            guard (try? await Task.sleep(for: .milliseconds(100))) != nil else { break }
        }
        throw .timedOut
    }

    // MARK: - The loop

    /// Starts the loop; `commit` puts an obtained certificate in the set; results go to
    /// `events` (``GatewayEvent/acmeChanged(_:)``).
    func start(events: EventHub, commit: @escaping Commit) {
        self.events.withLock { $0 = events }
        self.commit.withLock { $0 = commit }
        let task = Task { [self] in
            while !Task.isCancelled {
                for (name, conf, stored, renewal) in uncommitted(now: Date()) {
                    if Task.isCancelled { break }
                    await commitObtained(name, conf: conf, record: stored, renewal: renewal)
                }
                // A CA that cannot be reached is not asked again for its other entries in
                // this turn (each would wait for the same timeout before any order is made).
                var unreachable: Set<String> = []
                for (name, conf, stored) in renewalInfoDue(now: Date()) {
                    if Task.isCancelled { break }
                    guard let issuer = conf.acme, !unreachable.contains(issuer) else {
                        postponeRenewalInfo(name, by: 3_600)
                        continue
                    }
                    if await !checkRenewalInfo(name, conf: conf, stored: stored) { unreachable.insert(issuer) }
                }
                for (name, conf) in due(now: Date()) {
                    if Task.isCancelled { break }
                    await obtain(name, conf)
                }
                // Due renewals and backoffs are checked each second; a change wakes it at once.
                await wakeup.wait(atMost: .seconds(1))
            }
        }
        loop.withLock { $0 = task }
    }

    func stop() async {
        let task = loop.withLock { task -> Task<Void, Never>? in
            defer { task = nil }
            return task
        }
        task?.cancel()
        wakeup.signal()
        await task?.value
        let transports = state.withLock { state -> [HTTPClientTransport] in
            defer { state.transports = [] }
            return state.transports
        }
        for transport in transports { await transport.shutdown() }
        if let store { await runBlocking(on: storeQueue) { store.closeConnections() } }
    }

    /// Obtained certificates whose commit failed, due for another try.
    private func uncommitted(now: Date) -> [(String, CertificateConf, StoredACMECertificate, renewal: Bool)] {
        state.withLock { state in
            state.wanted.sorted { $0.key < $1.key }.compactMap { name, conf in
                guard let status = state.status[name], status.uncommitted, (status.nextAttempt ?? now) <= now,
                      let stored = state.obtained[name], stored.issuer == conf.acme else { return nil }
                return (name, conf, stored, status.uncommittedRenewal)
            }
        }
    }

    /// Puts an obtained certificate in the set; a failure is retried with backoff, while the
    /// stored certificate waits (it is not ordered again).
    /// `renewal`: the certificate replaces one the entry served.
    private func commitObtained(_ name: String, conf: CertificateConf, record: StoredACMECertificate, renewal: Bool) async {
        if let reason = await commit.withLock({ $0 })?(name, ACMEEntries.with(conf, record)) {
            state.withLock { state in
                state.status[name]?.uncommitted = true
                state.status[name]?.uncommittedRenewal = renewal
            }
            failed(name, issuer: record.issuer, reason: "the obtained certificate was not committed: \(reason)", result: nil)
        } else {
            let renewAt = state.withLock { state -> Date? in
                state.status[name]?.uncommitted = false
                state.status[name]?.state = .valid
                state.status[name]?.failures = 0
                state.status[name]?.nextAttempt = nil
                state.status[name]?.lastError = nil
                state.status[name]?.committedAt = Date()
                return state.status[name]?.renewAt
            }
            events.withLock { $0 }?.publish(.acmeChanged(.init(
                time: Date(), entry: name, acme: record.issuer, result: renewal ? .renewed : .obtained,
                notAfter: record.notAfter, renewAt: renewAt, failures: 0)))
        }
    }

    /// Entries with a current certificate whose renewal window is to be asked (again).
    private func renewalInfoDue(now: Date) -> [(String, CertificateConf, StoredACMECertificate)] {
        state.withLock { state in
            state.wanted.sorted { $0.key < $1.key }.compactMap { name, conf in
                guard !state.renewRequested.contains(name), let stored = state.obtained[name], stored.issuer == conf.acme,
                      stored.domains == ACMEEntries.orderNames(conf), (state.status[name]?.renewalInfoCheck ?? now) <= now else { return nil }
                return (name, conf, stored)
            }
        }
    }

    /// Asks the CA's ARI when to renew a certificate (RFC 9773 §4.2): a window in the past
    /// makes it due now, one in the future puts the renewal inside it (a time already chosen
    /// there is kept). Without ARI, or when the CA cannot be asked, the renewal follows the
    /// certificate's lifetime; the question is asked again after the CA's `Retry-After`
    /// (6 h by default; a failed one after an hour).
    /// - Returns: false when the CA could not be reached.
    private func checkRenewalInfo(_ name: String, conf: CertificateConf, stored: StoredACMECertificate) async -> Bool {
        guard let issuerName = conf.acme,
              let issuer = state.withLock({ $0.issuers[issuerName] }) ?? ACMEIssuerConfiguration.builtIn[issuerName] else {
            postponeRenewalInfo(name, by: 86_400)  // no such CA: the order fails and says so
            return true
        }
        var reachable = true
        let now = Date()
        var window: ACMERenewalInfo.Window?
        var nextCheck = now.addingTimeInterval(86_400)  // no ARI: the directory is asked again daily
        do throws(ACMEError) {
            let client = try await client(for: issuerName, issuer)
            if let leaf = Self.leaf(stored), let identifier = ARICertificateIdentifier.of(leaf),
               let answer = try await client.renewalInfo(certificateIdentifier: identifier) {
                window = answer.info.suggestedWindow
                nextCheck = now.addingTimeInterval(RenewalSchedule.nextRenewalInfoCheck(retryAfter: answer.retryAfter))
            }
        } catch {
            if case .transport = error { reachable = false }
            nextCheck = now.addingTimeInterval(3_600)
            logger.notice("no renewal window from the CA (ARI); renewing by the certificate's lifetime meanwhile", metadata: [
                "entry": "\(name)", "acme": "\(issuerName)", "reason": "\(error.description)",
            ])
        }
        let (before, after) = state.withLock { state -> (Date?, Date?) in
            guard state.obtained[name] == stored else { return (nil, nil) }  // renewed meanwhile
            var status = state.status[name] ?? Status(state: .valid)
            let before = status.renewAt
            if let window {
                status.renewAt = RenewalSchedule.renewalTime(
                    keeping: status.renewAt, window: window, notBefore: stored.notBefore, notAfter: stored.notAfter, now: now)
            } else if status.renewAt == nil {
                status.renewAt = Self.renewalTime(stored, issuer: issuer, now: now)
            }
            status.renewalInfoCheck = nextCheck
            state.status[name] = status
            return (before, status.renewAt)
        }
        if let window, let after, before != after {
            logger.info("renewal scheduled by the CA's window (ARI)", metadata: [
                "entry": "\(name)", "acme": "\(issuerName)", "window_start": "\(window.start)", "window_end": "\(window.end)",
                "renew_at": "\(after)",
            ])
        }
        return reachable
    }

    private func postponeRenewalInfo(_ name: String, by seconds: TimeInterval) {
        state.withLock { state in
            var status = state.status[name] ?? Status(state: .valid)
            status.renewalInfoCheck = Date().addingTimeInterval(seconds)
            state.status[name] = status
        }
    }

    /// Entries with no certificate from their CA, one for other names, or due for renewal,
    /// and not backing off; by name.
    private func due(now: Date) -> [(String, CertificateConf)] {
        state.withLock { state in
            state.wanted.sorted { $0.key < $1.key }.filter { name, conf in
                if conf.isOnDemand { return false }  // ordered per name, at handshakes (OnDemandCertificates)
                if state.renewRequested.contains(name) { return true }
                if let next = state.status[name]?.nextAttempt, next > now { return false }
                guard let stored = state.obtained[name], stored.issuer == conf.acme, stored.domains == ACMEEntries.orderNames(conf) else {
                    return true
                }
                let renewAt = state.status[name]?.renewAt ?? Self.renewalTime(stored, issuer: conf.acme.flatMap { state.issuers[$0] ?? ACMEIssuerConfiguration.builtIn[$0] }, now: now)
                if state.status[name] == nil { state.status[name] = Status(state: .valid) }
                if state.status[name]?.renewAt == nil { state.status[name]?.renewAt = renewAt }
                return renewAt <= now
            }
        }
    }

    private static func renewalTime(_ stored: StoredACMECertificate, issuer: ACMEIssuerConfiguration?, now: Date, window: ACMERenewalInfo.Window? = nil) -> Date {
        RenewalSchedule.renewalTime(
            notBefore: stored.notBefore, notAfter: stored.notAfter,
            renewBefore: issuer?.renewBefore.map { TimeInterval($0.duration.components.seconds) }, window: window, now: now)
    }


    /// Runs a store call on the store's queue.
    private func onStore<T: Sendable>(_ body: @escaping @Sendable (any ACMEStore) throws -> T?) async throws -> T? {
        try await runBlocking(on: storeQueue, store: store, body)
    }

    // MARK: - One order

    /// `accountRenewed`: this is the second attempt, after the CA said it does not know the
    /// account (a new one was registered).
    private func obtain(_ name: String, _ conf: CertificateConf, accountRenewed: Bool = false) async {
        guard let issuerName = conf.acme else { return }
        let (issuer, previous, forced) = state.withLock { state -> (ACMEIssuerConfiguration?, StoredACMECertificate?, Bool) in
            let forced = state.renewRequested.remove(name) != nil
            let previous = state.obtained[name]
            var status = state.status[name] ?? Status(state: .pending)
            status.state = previous == nil ? .pending : .renewing
            state.status[name] = status
            return (state.issuers[issuerName] ?? ACMEIssuerConfiguration.builtIn[issuerName], previous, forced)
        }
        guard let issuer else {
            failed(name, issuer: issuerName, reason: "no ACME CA is called \(QuotedValue.quote(issuerName))", result: "error")
            return
        }
        let names = ACMEEntries.orderNames(conf)
        // One order per name (fleet-wide with shared_state): another node ordering it means
        // waiting for its certificate, not ordering a second one.
        // (The second attempt after a new account runs inside the first one's lock.)
        var lock: (any ACMEOrderLock)?
        if !accountRenewed {
            do {
                lock = try await onStore { try $0.orderLock(name: name) }
            } catch {
                failed(name, issuer: issuerName, reason: describeStoreFailure(error), result: "error")
                return
            }
            if store != nil, lock == nil {
                orderedElsewhere(name)
                return
            }
        }
        defer { if let lock { storeQueue.async { lock.release() } } }
        // `ctl renew` asks for a new certificate, whatever is stored.
        if !forced, !accountRenewed, await adopt(name, conf: conf, issuerName: issuerName, issuer: issuer, names: names, previous: previous) { return }
        logger.notice("ordering a certificate", metadata: [
            "entry": "\(name)", "acme": "\(issuerName)", "names": "\(names.joined(separator: ","))",
            "renewal": "\(previous != nil)",
        ])
        do throws(ACMEError) {
            let (record, client, leaf) = try await placeOrder(name: name, names: names, issuerName: issuerName, issuer: issuer, previous: previous)
            do {
                _ = try await onStore { store -> Bool? in
                    try store.saveACMECertificate(record)
                    return true
                }
            } catch {
                failed(name, issuer: issuerName, reason: describeStoreFailure(error), result: "error")
                return
            }
            var window: ACMERenewalInfo.Window?
            var renewalInfoCheck = Date().addingTimeInterval(86_400)
            if let identifier = ARICertificateIdentifier.of(leaf) {
                do {
                    if let answer = try await client.renewalInfo(certificateIdentifier: identifier) {
                        window = answer.info.suggestedWindow
                        renewalInfoCheck = Date().addingTimeInterval(RenewalSchedule.nextRenewalInfoCheck(retryAfter: answer.retryAfter))
                    }
                } catch {
                    renewalInfoCheck = Date().addingTimeInterval(3_600)
                    // ARI is advice: without it the renewal time follows the certificate's lifetime.
                    logger.notice("no renewal window from the CA (ARI); renewing by the certificate's lifetime", metadata: [
                        "entry": "\(name)", "reason": "\(error.description)",
                    ])
                }
            }
            let renewAt = Self.renewalTime(record, issuer: issuer, now: Date(), window: window)
            state.withLock { state in
                state.obtained[name] = record
                state.status[name] = Status(state: .valid, renewAt: renewAt, renewalInfoCheck: renewalInfoCheck)
            }
            Counter(label: "certgate_acme_orders_total", dimensions: [("acme", issuerName), ("result", "valid")]).increment()
            logger.notice("certificate obtained", metadata: [
                "entry": "\(name)", "acme": "\(issuerName)", "not_after": "\(record.notAfter)", "renew_at": "\(renewAt)",
            ])
            await commitObtained(name, conf: conf, record: record, renewal: previous != nil)
        } catch {
            if error.isAccountUnknown, !accountRenewed {
                // The CA lost the account (its state was reset, or the account was removed):
                // register a new one and order again at once.
                do throws(ACMEError) {
                    try await forgetAccount(issuerName, issuer)
                } catch {
                    failed(name, issuer: issuerName, reason: error.description, result: "error")
                    return
                }
                await obtain(name, conf, accountRenewed: true)
                return
            }
            let result: String
            switch error {
            case .authorizationFailed, .orderFailed, .problem: result = "invalid"
            default: result = "error"
            }
            failed(name, issuer: issuerName, reason: error.description, result: result, retryAfter: error.retryAfter)
        }
    }

    /// One order with the CA for `names`: the configured challenges' solvers, ARI's
    /// `replaces` when `previous` is renewed, the chain checked to hold a leaf. Returns the
    /// record to store (not stored yet), the CA's client and the leaf.
    private func placeOrder(
        name: String, names: [String], issuerName: String, issuer: ACMEIssuerConfiguration, previous: StoredACMECertificate?
    ) async throws(ACMEError) -> (StoredACMECertificate, ACMEClient, Certificate) {
        let client = try await client(for: issuerName, issuer)
        let solvers: [any ChallengeSolver] = issuer.challenges.map { challenge in
            switch challenge {
            case .tlsALPN01: return TLSALPN01Solver(responses: responses, fleet: sharedChallenges)
            case .http01: return HTTP01Solver(responses: responses, fleet: sharedChallenges)
            case .dns01: return DNS01HookSolver(hook: issuer.dnsHook ?? [], timeout: .seconds(120), logger: logger)
            }
        }
        // ARI: the new order says which certificate it replaces (RFC 9773 §5).
        var replaces: String?
        if let previous, let leaf = Self.leaf(previous), try await client.directory().renewalInfo != nil {
            replaces = ARICertificateIdentifier.of(leaf)
        }
        let obtained = try await CertificateOrder(client: client, solvers: solvers).obtain(CertificateOrderRequest(
            names: names, preferredChain: issuer.preferredChain, profile: issuer.profile, replaces: replaces))
        guard let leafPEM = try? PEMMaterialParser.certificates(fromPEM: obtained.chainPEM).first else {
            throw ACMEError.unexpected(step: "certificate", reason: "the chain holds no certificate")
        }
        let leaf = leafPEM.certificate
        let record = StoredACMECertificate(
            name: name, issuer: issuerName, domains: names, chainPEM: obtained.chainPEM, keyPEM: obtained.privateKeyPEM,
            notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter, certificateURL: obtained.certificateURL, obtainedAt: Date())
        return (record, client, leaf)
    }

    // MARK: - On demand

    /// Obtains a certificate for one host name of an on-demand entry (a first one, or the
    /// renewal of `previous`), under the name's order lock (fleet-wide with `shared_state`),
    /// and stores it with `lastUsed`. A certificate another node stored meanwhile that is not
    /// due is taken instead of ordering.
    func obtainOnDemand(
        host: String, entry: String, conf: CertificateConf, previous: StoredACMECertificate?, lastUsed: Date
    ) async -> OnDemandOrder {
        guard let issuerName = conf.acme else { return .failed("entry \(QuotedValue.quote(entry)) names no ACME CA") }
        guard let issuer = state.withLock({ $0.issuers[issuerName] }) ?? ACMEIssuerConfiguration.builtIn[issuerName] else {
            return .failed("no ACME CA is called \(QuotedValue.quote(issuerName))")
        }
        var lock: (any ACMEOrderLock)?
        do {
            lock = try await onStore { try $0.orderLock(name: "on-demand:" + host) }
        } catch {
            return .failed(describeStoreFailure(error))
        }
        if store != nil, lock == nil { return .orderedElsewhere }
        defer { if let lock { storeQueue.async { lock.release() } } }
        let now = Date()
        // Another node's certificate, when the state can say; when it cannot, the order goes
        // on (and meets the same state when it stores what it obtained, failing there).
        if let stored = try? await onStore({ try $0.onDemandCertificate(host: host) }), stored.certificate != previous,
           Self.renewalTime(stored.certificate, issuer: issuer, now: now) > now {
            return .obtained(stored.certificate, ordered: false)
        }
        logger.notice("ordering a certificate on demand", metadata: [
            "entry": "\(entry)", "acme": "\(issuerName)", "name": "\(host)", "renewal": "\(previous != nil)",
        ])
        var accountRenewed = false
        while true {
            do throws(ACMEError) {
                let (record, _, _) = try await placeOrder(name: host, names: [host], issuerName: issuerName, issuer: issuer, previous: previous)
                do {
                    _ = try await onStore { store -> Bool? in
                        try store.saveOnDemandCertificate(StoredOnDemandCertificate(certificate: record, entry: entry, lastUsed: lastUsed))
                        return true
                    }
                } catch {
                    Counter(label: "certgate_acme_orders_total", dimensions: [("acme", issuerName), ("result", "error")]).increment()
                    return .failed(describeStoreFailure(error))
                }
                Counter(label: "certgate_acme_orders_total", dimensions: [("acme", issuerName), ("result", "valid")]).increment()
                logger.notice("certificate obtained on demand", metadata: [
                    "entry": "\(entry)", "acme": "\(issuerName)", "name": "\(host)", "not_after": "\(record.notAfter)",
                ])
                return .obtained(record, ordered: true)
            } catch {
                if error.isAccountUnknown, !accountRenewed {
                    accountRenewed = true
                    do throws(ACMEError) {
                        try await forgetAccount(issuerName, issuer)
                        continue
                    } catch {
                        return .failed(error.description)
                    }
                }
                let result: String
                switch error {
                case .authorizationFailed, .orderFailed, .problem: result = "invalid"
                default: result = "error"
                }
                Counter(label: "certgate_acme_orders_total", dimensions: [("acme", issuerName), ("result", result)]).increment()
                return .failed(error.description)
            }
        }
    }

    /// When an on-demand certificate from `issuerName` is to be renewed: the CA's
    /// `renew_before`, else when a third of its lifetime remains.
    func renewalTime(of stored: StoredACMECertificate, issuerName: String, now: Date) -> Date {
        let issuer = state.withLock { $0.issuers[issuerName] } ?? ACMEIssuerConfiguration.builtIn[issuerName]
        return Self.renewalTime(stored, issuer: issuer, now: now)
    }

    /// Called with the on-demand entries after every change of the wanted entries.
    func observeOnDemandEntries(_ observer: @escaping @Sendable ([String: CertificateConf]) -> Void) {
        onDemandObserver.withLock { $0 = observer }
        observer(state.withLock { $0.wanted.filter { $0.value.isOnDemand } })
    }

    private func failed(_ name: String, issuer: String, reason: String, result: String?, retryAfter: Double? = nil) {
        let (failures, next) = state.withLock { state -> (Int, Date) in
            var status = state.status[name] ?? Status(state: .failed)
            status.state = .failed
            status.lastError = reason
            status.failures += 1
            let wait = max(RenewalSchedule.backoff(failures: status.failures), retryAfter ?? 0)
            status.nextAttempt = Date().addingTimeInterval(wait)
            state.status[name] = status
            return (status.failures, status.nextAttempt!)
        }
        if let result {
            Counter(label: "certgate_acme_orders_total", dimensions: [("acme", issuer), ("result", result)]).increment()
        }
        events.withLock { $0 }?.publish(.acmeChanged(.init(
            time: Date(), entry: name, acme: issuer, result: .failed, reason: reason, failures: failures, nextAttempt: next)))
        logger.error("obtaining a certificate failed; the entry keeps what it serves", metadata: [
            "entry": "\(name)", "acme": "\(issuer)", "reason": "\(reason)", "failures": "\(failures)", "next_attempt": "\(next)",
        ])
    }

    private static func leaf(_ stored: StoredACMECertificate) -> Certificate? {
        try? PEMMaterialParser.certificates(fromPEM: stored.chainPEM).first?.certificate
    }

    /// Drops the client and the stored account of a CA that no longer knows the account: the
    /// next order registers a new account with a new key.
    /// - Throws: the state refused to drop the account (the attempt fails with that reason:
    ///   ordering on would find the stale account again).
    private func forgetAccount(_ issuerName: String, _ issuer: ACMEIssuerConfiguration) async throws(ACMEError) {
        state.withLock { $0.clients[issuerName] = nil }
        do {
            _ = try await onStore { store -> Bool? in
                try store.forgetACMEAccount(directory: issuer.directory)
                return true
            }
        } catch {
            throw ACMEError.unexpected(step: "account", reason: "the CA no longer knows the account, and it cannot be removed from the state: \(describeStoreFailure(error))")
        }
        logger.warning("the CA does not know the ACME account any more; registering a new one", metadata: ["acme": "\(issuerName)"])
    }

    /// The client of a CA, with its account: the key and URL kept in the state, or a new
    /// key registered now (contact, terms, EAB) and stored.
    private func client(for issuerName: String, _ issuer: ACMEIssuerConfiguration) async throws(ACMEError) -> ACMEClient {
        if let client = state.withLock({ $0.clients[issuerName] }) { return client }
        let baseDirectory = state.withLock { $0.baseDirectory }
        var roots: [[UInt8]] = []
        if let path = issuer.caRoots {
            let file = MaterialSource.resolve(path: path, baseDirectory: baseDirectory)
            guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                  let certificates = try? PEMMaterialParser.certificates(fromPEM: text), !certificates.isEmpty else {
                throw ACMEError.unexpected(step: "ca_roots", reason: "\(QuotedValue.shown(file, limit: 255)) holds no PEM certificate")
            }
            roots = certificates.map(\.der)
        }
        let transport: HTTPClientTransport
        do {
            transport = try HTTPClientTransport(extraRoots: roots)
        } catch {
            throw ACMEError.unexpected(step: "ca_roots", reason: "a root in ca_roots is not usable by TLS")
        }
        state.withLock { $0.transports.append(transport) }
        let stored: StoredAccount?
        do {
            stored = try await onStore { store in
                try store.acmeAccount(directory: issuer.directory).map { StoredAccount(keyPEM: $0.keyPEM, accountURL: $0.accountURL) }
            }
        } catch {
            throw ACMEError.unexpected(step: "account", reason: describeStoreFailure(error))
        }
        let key: AccountKey
        if let pem = stored?.keyPEM, let existing = try? AccountKey(pemRepresentation: pem) {
            key = existing
        } else {
            key = AccountKey()
        }
        let client = ACMEClient(directoryURL: issuer.directory, transport: transport, accountKey: key, accountURL: stored?.accountURL)
        if stored?.accountURL == nil {
            var binding: (keyIdentifier: String, macKey: [UInt8])?
            if let eab = issuer.eab, let macKey = Base64URL.decode(eab.hmacKey) { binding = (eab.kid, macKey) }
            let url = try await client.register(contact: issuer.email.map { ["mailto:" + $0] } ?? [], agreeToTerms: true, externalAccount: binding)
            do {
                let keyPEM = key.pemRepresentation
                _ = try await onStore { store -> Bool? in
                    try store.saveACMEAccount(directory: issuer.directory, keyPEM: keyPEM, accountURL: url)
                    return true
                }
            } catch {
                throw ACMEError.unexpected(step: "account", reason: describeStoreFailure(error))
            }
            logger.notice("ACME account registered", metadata: ["acme": "\(issuerName)", "account": "\(url)"])
        }
        state.withLock { $0.clients[issuerName] = client }
        return client
    }
    private struct StoredAccount: Sendable {
        var keyPEM: String
        var accountURL: String?
    }

    /// Another node holds the name's order lock: look again shortly (its certificate, once
    /// stored, is adopted then; its commit reaches this node's set meanwhile).
    private func orderedElsewhere(_ name: String) {
        state.withLock { state in
            var status = state.status[name] ?? Status(state: .pending)
            status.nextAttempt = Date().addingTimeInterval(2)
            state.status[name] = status
        }
        logger.info("another node of the fleet is ordering this name; waiting for its certificate", metadata: ["entry": "\(name)"])
    }

    /// Holding the name's order lock: a certificate stored for the entry since this node
    /// last looked (another node's order), for the names and CA wanted and not due, is
    /// taken as this node's — no order. Returns whether it was.
    private func adopt(
        _ name: String, conf: CertificateConf, issuerName: String, issuer: ACMEIssuerConfiguration, names: [String],
        previous: StoredACMECertificate?
    ) async -> Bool {
        let record: StoredACMECertificate?
        do {
            record = try await onStore { try $0.acmeCertificate(named: name) }
        } catch {
            return false  // the order itself meets (and reports) the same store
        }
        let now = Date()
        guard let record, record != previous, record.issuer == issuerName, record.domains == names,
              Self.renewalTime(record, issuer: issuer, now: now) > now else { return false }
        let renewAt = Self.renewalTime(record, issuer: issuer, now: now)
        state.withLock { state in
            state.obtained[name] = record
            state.status[name] = Status(state: .valid, renewAt: renewAt)
        }
        logger.notice("certificate obtained by another node of the fleet", metadata: [
            "entry": "\(name)", "acme": "\(issuerName)", "not_after": "\(record.notAfter)", "renew_at": "\(renewAt)",
        ])
        await commitObtained(name, conf: conf, record: record, renewal: previous != nil)
        return true
    }
}
