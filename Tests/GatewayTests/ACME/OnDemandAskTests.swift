import AsyncHTTPClient
import Foundation
import NIOPosix
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

    @Test("an answer whose body never ends refuses at ask_timeout and holds no connection: twelve of them at once, then an ordinary name is allowed at once")
    func tricklingBodyTimesOut() async throws {
        let endpoint = try await AskEndpoint(trickles: { $0.hasPrefix("trickle") }) { _ in true }
        let client = OnDemandAsk.makeClient(group: MultiThreadedEventLoopGroup.singleton)
        let ask = OnDemandAsk(client: client)
        let reasons = await withTaskGroup(of: String?.self) { group in
            for index in 0..<12 {
                group.addTask { await ask.ask(endpoint.url, name: "trickle-\(index).customers.test", timeout: 0.5, remember: 0) }
            }
            return await group.reduce(into: [String?]()) { $0.append($1) }
        }
        #expect(reasons == Array(repeating: "the ask endpoint did not answer within 500 ms", count: 12))
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
