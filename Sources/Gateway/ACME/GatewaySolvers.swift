import ACME
import Foundation
import Logging

/// `tls-alpn-01` answered by the TLS listeners: the validation certificate goes to
/// ``ChallengeResponses``, where ``ClientHelloSniffer`` finds it — and, in a fleet, to every
/// node (``FleetChallenges``).
struct TLSALPN01Solver: ChallengeSolver {
    let challengeType = "tls-alpn-01"
    let responses: ChallengeResponses
    var fleet: FleetChallenges? = nil

    func present(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async throws(ChallengeSetupError) {
        let name = identifier.value.lowercased()
        let certificate: [UInt8]
        let privateKey: [UInt8]
        do {
            let answer = try TLSALPNChallengeCertificate(name: name, keyAuthorization: keyAuthorization)
            certificate = try answer.derBytes()
            privateKey = Array(answer.privateKey.derRepresentation)
            responses.setTLSALPN01(name: name, context: try ListenerTLS.makeChallengeContext(certificateDER: certificate, privateKeyDER: privateKey))
        } catch {
            throw ChallengeSetupError("the validation certificate could not be made")
        }
        guard let fleet else { return }
        do {
            try await fleet.publish(.tlsALPN01, key: name, answer: "", certificate: certificate, privateKey: privateKey)
        } catch {
            throw ChallengeSetupError("the answer could not be shared with the fleet: \(describeStoreFailure(error))")
        }
    }

    func cleanup(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async {
        responses.removeTLSALPN01(name: identifier.value.lowercased())
        await fleet?.withdraw(.tlsALPN01, key: identifier.value.lowercased())
    }
}

/// `http-01` answered by the `protocol: http` listeners from ``ChallengeResponses`` — in a
/// fleet, those of every node (``FleetChallenges``).
struct HTTP01Solver: ChallengeSolver {
    let challengeType = "http-01"
    let responses: ChallengeResponses
    var fleet: FleetChallenges? = nil

    func present(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async throws(ChallengeSetupError) {
        responses.setHTTP01(token: keyAuthorization.token, keyAuthorization: keyAuthorization.http01Body)
        guard let fleet else { return }
        do {
            try await fleet.publish(.http01, key: keyAuthorization.token, answer: keyAuthorization.http01Body)
        } catch {
            throw ChallengeSetupError("the answer could not be shared with the fleet: \(describeStoreFailure(error))")
        }
    }

    func cleanup(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async {
        responses.removeHTTP01(token: keyAuthorization.token)
        await fleet?.withdraw(.http01, key: keyAuthorization.token)
    }
}

/// `dns-01` through the operator's hook, run without a shell as
/// `HOOK… present|cleanup _acme-challenge.NAME. VALUE` (lego's `exec` provider's
/// convention); it must return once the record is published. Its output is not logged
/// (a hook may print credentials); a failure is its exit status.
struct DNS01HookSolver: ChallengeSolver {
    let challengeType = "dns-01"
    let hook: [String]
    let timeout: Duration
    let logger: Logger

    func present(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async throws(ChallengeSetupError) {
        let status = await run("present", identifier: identifier, value: keyAuthorization.dns01Value)
        guard status == 0 else {
            throw ChallengeSetupError(status.map { "dns_hook present exited with status \($0)" } ?? "dns_hook present did not finish within \(timeout)")
        }
    }

    func cleanup(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async {
        let status = await run("cleanup", identifier: identifier, value: keyAuthorization.dns01Value)
        if status != 0 {
            logger.warning("dns_hook cleanup failed; the TXT record may stay", metadata: [
                "name": "\(identifier.value)", "status": "\(status.map { "\($0)" } ?? "timeout")",
            ])
        }
    }

    /// The exit status, or nil when it ran past the timeout (then it is killed).
    private func run(_ action: String, identifier: ACMEIdentifier, value: String) async -> Int32? {
        guard let program = hook.first else { return 127 }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = Array(hook.dropFirst()) + [action, "_acme-challenge.\(identifier.value.lowercased()).", value]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let finished = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { finished.continuation.yield($0.terminationStatus); finished.continuation.finish() }
        do {
            try process.run()
        } catch {
            return 127
        }
        let timeout = self.timeout
        return await withTaskGroup(of: Int32?.self) { group in
            group.addTask {
                for await status in finished.stream { return status }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            if first == nil { ChildProcessStop.stop(process) }
            group.cancelAll()
            return first
        }
    }
}
