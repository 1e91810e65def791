import AsyncHTTPClient
import CertificateTestSupport
import Foundation
import NIOPosix
import NIOSSL
import Synchronization
import Testing
@testable import Gateway

@Suite("the ask endpoint of on-demand entries", .timeLimit(.minutes(1)))
struct OnDemandAskTests {
    @Test("2xx allows, any other status refuses with it, a redirect too (not followed); a yes is remembered for ask_cache, a no is not")
    func answers() async throws {
        let endpoint = try await AskEndpoint { $0.hasPrefix("ok") }
        let client = OnDemandAsk.makeClient(group: MultiThreadedEventLoopGroup.singleton)
        let ask = OnDemandAsk(client: client)
        #expect(await ask.ask(endpoint.url, name: "ok.customers.test", timeout: 2, remember: 60) == nil)
        #expect(await ask.ask(endpoint.url, name: "ok.customers.test", timeout: 2, remember: 60) == nil)
        #expect(await ask.ask(endpoint.url, name: "no.customers.test", timeout: 2, remember: 60) == "the ask endpoint answered 403")
        #expect(await ask.ask(endpoint.url, name: "no.customers.test", timeout: 2, remember: 60) == "the ask endpoint answered 403")
        #expect(await ask.ask(endpoint.url, name: "redirect.customers.test", timeout: 2, remember: 60) == "the ask endpoint answered 302")
        #expect(endpoint.askedNames == ["ok.customers.test", "no.customers.test", "no.customers.test", "redirect.customers.test"])
        await endpoint.close()
        try await client.shutdown()
    }

    @Test("an answer whose body never ends refuses at ask_timeout and holds no connection: 70 of them at once (more than the 64 connections kept per endpoint), then an ordinary name is allowed at once")
    func tricklingBodyTimesOut() async throws {
        let endpoint = try await AskEndpoint(trickles: { $0.hasPrefix("trickle") }) { _ in true }
        let client = OnDemandAsk.makeClient(group: MultiThreadedEventLoopGroup.singleton)
        let ask = OnDemandAsk(client: client)
        let reasons = await withTaskGroup(of: String?.self) { group in
            for index in 0..<70 {
                group.addTask { await ask.ask(endpoint.url, name: "trickle-\(index).customers.test", timeout: 0.5, remember: 0) }
            }
            return await group.reduce(into: [String?]()) { $0.append($1) }
        }
        #expect(reasons == Array(repeating: "the ask endpoint did not answer within 500 ms", count: 70))
        // Each refused at its timeout, not held until the body ends (it never does: without the
        // timeout this test runs into the suite's time limit), and no connection is left held.
        #expect(await ask.ask(endpoint.url, name: "fine.customers.test", timeout: 2, remember: 0) == nil)
        await endpoint.close()
        try await client.shutdown()
    }

    @Test("an ask URL the configuration check would refuse (a port over 65535) is refused at the ask, not sent")
    func unusableURLIsNotSent() async throws {
        let client = OnDemandAsk.makeClient(group: MultiThreadedEventLoopGroup.singleton)
        let ask = OnDemandAsk(client: client)
        #expect(await ask.ask("http://127.0.0.1:65536/ok", name: "a.customers.test", timeout: 1, remember: 0) == "the ask URL is not usable")
        #expect(await ask.ask("http://[::1]:70000/ok", name: "a.customers.test", timeout: 1, remember: 0) == "the ask URL is not usable")
        try await client.shutdown()
    }
}

@Suite("the ask endpoint's limits: size, refused connections, HTTPS", .timeLimit(.minutes(1)))
struct OnDemandAskLimitsTests {
    @Test("an answer is read up to 64 KiB: a 2xx whose body is 65,536 bytes allows, one of 65,537 refuses")
    func bodyCap() async throws {
        let endpoint = try await AskEndpoint { _ in true }
        let client = OnDemandAsk.makeClient(group: MultiThreadedEventLoopGroup.singleton)
        let ask = OnDemandAsk(client: client)
        #expect(await ask.ask(endpoint.url, name: "body65536.customers.test", timeout: 5, remember: 0) == nil)
        #expect(await ask.ask(endpoint.url, name: "body65537.customers.test", timeout: 5, remember: 0) == "the ask endpoint's answer is longer than 64 KiB")
        #expect(endpoint.askedNames == ["body65536.customers.test", "body65537.customers.test"])
        await endpoint.close()
        try await client.shutdown()
    }

    @Test("a refused connection is tried again until ask_timeout: an endpoint that starts listening after the question is asked allows the name; one that never listens refuses at ask_timeout")
    func refusedConnectionRetried() async throws {
        let client = OnDemandAsk.makeClient(group: MultiThreadedEventLoopGroup.singleton)
        let ask = OnDemandAsk(client: client)
        let dead = try ReservedPort()
        let started = ContinuousClock.now
        let refused = await ask.ask("http://127.0.0.1:\(dead.port)/allowed", name: "a.customers.test", timeout: 0.5, remember: 0)
        // Not the first refusal (a millisecond away): the last one, at ask_timeout.
        #expect(ContinuousClock.now - started >= .milliseconds(500))
        #expect(refused == "the ask endpoint could not be reached: Connection refused (errno 111)", "\(refused ?? "allowed")")

        let late = try ReservedPort()
        let url = "http://127.0.0.1:\(late.port)/allowed"
        // Asked while the port refuses connections; the endpoint starts listening 300 ms after
        // the question (the scenario itself: an endpoint restarting), well inside the 10 s
        // ask_timeout.
        let askedAt = Mutex<ContinuousClock.Instant?>(nil)
        let asking = Task {
            askedAt.withLock { $0 = .now }
            return await ask.ask(url, name: "late.customers.test", timeout: 10, remember: 0)
        }
        #expect(try await eventually { askedAt.withLock { $0 } != nil })
        try await Task.sleep(for: .milliseconds(300))
        let endpoint = try await AskEndpoint(reserved: late) { _ in true }
        #expect(await asking.value == nil)
        #expect(endpoint.askedNames == ["late.customers.test"])
        await endpoint.close()
        try await client.shutdown()
    }

    @Test("an https ask endpoint is verified against the system's roots: one whose certificate they do not trust refuses, and is never asked")
    func httpsVerified() async throws {
        let authority = TestCertificate.authority(commonName: "Ask Test CA")
        let leaf = authority.leaf(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        let context = try NIOSSLContext(configuration: .makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: leaf.parsed.der, format: .der))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(leaf.key.pkcs8PEM.utf8), format: .pem))))
        let endpoint = try await AskEndpoint(tls: context) { _ in true }
        #expect(endpoint.url.hasPrefix("https://"))
        let client = OnDemandAsk.makeClient(group: MultiThreadedEventLoopGroup.singleton)
        let ask = OnDemandAsk(client: client)
        let reason = await ask.ask(endpoint.url, name: "a.customers.test", timeout: 2, remember: 0)
        #expect(reason == "the TLS handshake with the ask endpoint failed (is its certificate trusted by the system's roots?)", "\(reason ?? "allowed")")
        #expect(endpoint.askedNames == [])
        await endpoint.close()
        try await client.shutdown()
    }
}
