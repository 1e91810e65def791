import Foundation
import Logging
import Testing
@testable import Gateway

@Suite("The reload plan: what a reload replaces live and what waits for a restart", .timeLimit(.minutes(2)))
struct ReloadPlanTests {
    /// Listeners last, so that appending a line sets the listener's own keys.
    static let base = """
        routes:
          - server_names: ["*"]
            respond: { body: "hello" }
        listeners:
          - name: https
            listen: 127.0.0.1:8443
        """

    static func configuration(_ yaml: String) throws -> GatewayConfiguration {
        try GatewayConfiguration.parse(yaml: yaml, file: "certgate.yaml", baseDirectory: "/etc/certgate")
    }

    static func plan(_ next: String, running: String = base) throws -> ReloadPlan {
        ReloadPlan(running: try configuration(running), next: try configuration(next))
    }

    @Test("every top-level key of the file is a section the plan decides on, and no other")
    func sectionsAreTheFilesKeys() {
        #expect(Set(ReloadPlan.Section.allCases.map(\.rawValue)) == Set(GatewayConfiguration.topLevelKeys))
        #expect(ReloadPlan.Section.allCases.count == 13)
    }

    @Test("the same file plans nothing; certificates: always go through the update transaction, so they are not planned")
    func unchangedFile() throws {
        let plan = try Self.plan(Self.base + "\ncertificates:\n  a: { tls_cert: a.pem, tls_key: a.key }\n")
        #expect(plan.live.isEmpty)
        #expect(plan.restartNeeded.isEmpty)
        #expect(try Self.plan(Self.base).live.isEmpty)
        #expect(try Self.plan(Self.base).restartNeeded.isEmpty)
    }

    @Test("sections replaced live: routes, a listener's TLS settings, log_level, shutdown_timeout, issuing, validity.interval, validity.notify")
    func liveSections() throws {
        #expect(try Self.plan(Self.base.replacingOccurrences(of: "\"hello\"", with: "\"bye\"")).live == [.routes])
        #expect(try Self.plan(Self.base + "\n    alpn: [h2]").live == [.listener(name: "https")])
        #expect(try Self.plan(Self.base + "\n    handshake_timeout: 3s").live == [.listener(name: "https")])
        #expect(try Self.plan(Self.base + "\nlog_level: debug\n").live == [.logLevel(from: .info, to: .debug)])
        #expect(try Self.plan(Self.base + "\nshutdown_timeout: 2s\n").live == [.shutdownTimeout])
        #expect(try Self.plan(Self.base + "\nissuing: { burst: 5 }\n").live == [.issuing])
        #expect(try Self.plan(Self.base + "\nvalidity: { interval: 5m }\n").live == [.validityInterval])
        #expect(try Self.plan(Self.base + "\nvalidity:\n  notify:\n    - command: [/bin/true]\n").live == [.validityNotifiers])
        #expect(try Self.plan(Self.base + "\nacme:\n  ca: { directory: \"https://ca.test/dir\" }\n").live == [.acmeIssuers])
        // Written differently, meaning the same: nothing to do.
        #expect(try Self.plan(Self.base + "\nvalidity: { interval: 60m }\n", running: Self.base + "\nvalidity: { interval: 1h }\n").live.isEmpty)
        #expect(try Self.plan(Self.base).restartNeeded.isEmpty)
    }

    @Test("sections that need a restart say which and what changed, and change nothing live")
    func restartSections() throws {
        func restart(_ next: String, running: String = Self.base) throws -> [String] {
            let plan = try Self.plan(next, running: running)
            #expect(plan.live.isEmpty)
            return plan.restartNeeded.map { "\($0.section.rawValue): \($0.change)" }
        }
        #expect(try restart(Self.base.replacingOccurrences(of: "8443", with: "9443"))
            == ["listeners: listener https moves from 127.0.0.1:8443 to 127.0.0.1:9443"])
        #expect(try restart(Self.base + "\n  - name: admin\n    listen: 127.0.0.1:9000\n")
            == ["listeners: listener admin (127.0.0.1:9000) is new"])
        #expect(try restart(Self.base, running: Self.base + "\n  - name: admin\n    listen: 127.0.0.1:9000\n")
            == ["listeners: listener admin was removed"])
        #expect(try restart(Self.base + "\n    protocol: http")
            == ["listeners: listener https changes protocol from tls to http"])
        #expect(try restart(Self.base + "\nstate_dir: /var/lib/certgate\n")
            == ["state_dir: state_dir moves from /etc/certgate/state to /var/lib/certgate"])
        #expect(try restart(Self.base + "\ncontrol: { socket: run/control.sock }\n")
            == ["control: the control socket settings changed"])
        #expect(try restart(Self.base + "\ncontrol: { socket: run/control.sock, mode: \"0660\" }\n", running: Self.base + "\ncontrol: { socket: run/control.sock }\n")
            == ["control: the control socket settings changed"])
        #expect(try restart(Self.base + "\nmetrics: { listen: 127.0.0.1:9100 }\n")
            == ["metrics: metrics.listen changes from none to 127.0.0.1:9100"])
        #expect(try restart(Self.base + "\nshared_state: { postgres: \"postgres://certgate@db.example:5432/certgate\", node: edge-1 }\n")
            == ["shared_state: shared_state is added (the node would join the fleet at certgate@db.example:5432/certgate)"])
        #expect(try restart(
            Self.base + "\nshared_state: { postgres: \"postgres://certgate@db.example:5432/certgate\", node: edge-2 }\n",
            running: Self.base + "\nshared_state: { postgres: \"postgres://certgate@db.example:5432/certgate\", node: edge-1 }\n")
            == ["shared_state: shared_state changes: node from edge-1 to edge-2"])
    }

    @Test("a listener whose address and ALPN both change: the ALPN live, the address at the restart")
    func listenerBoth() throws {
        let plan = try Self.plan(Self.base.replacingOccurrences(of: "8443", with: "9443") + "\n    alpn: [h2]")
        #expect(plan.live == [.listener(name: "https")])
        #expect(plan.restartNeeded.map(\.change) == ["listener https moves from 127.0.0.1:8443 to 127.0.0.1:9443"])
    }
}
