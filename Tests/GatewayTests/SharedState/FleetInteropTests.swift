import CertificateKit
import CertificateTestSupport
import ControlProtocol
import Foundation
import GRDB
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import NIOPosix
import NIOSSL
import Testing
import X509
#if canImport(Glibc)
import Glibc
#endif

/// Three real `certgate` processes sharing one throw-away PostgreSQL cluster
/// (`shared_state`), driven through their control sockets and checked by handshakes.
@Suite("A fleet on PostgreSQL (three real binaries)", .serialized, .timeLimit(.minutes(5)))
struct FleetInteropTests {
    typealias Control = ControlInteropTests.Control

    /// One node: its process and folder.
    struct Node {
        let name: String
        let gateway: GatewayProcess
        let folder: FixtureFolder
        /// The listener's port when the configuration names it (else the one GatewayProcess chose).
        var fixedPort: Int? = nil
        /// The metrics endpoint's port, when the node has one (bound to port 0, read from its log).
        var metricsPort: Int? { gateway.metricsPort }
        var socket: String { ControlInteropTests.socket(folder) }
        var port: Int { fixedPort ?? gateway.port }
    }

    /// A node's configuration: the standard interop one with a control socket, and
    /// `shared_state` on `cluster` with the password in a file. `pollInterval` 1h: a node
    /// learns of commits by notification alone unless a test says otherwise.
    static func config(node: String, cluster: PostgresCluster, pollInterval: String = "1h", metrics: Bool = false, extraCertificates: String = "") -> String {
        ControlInteropTests.config(GatewayInteropTests.config(extraCertificates: extraCertificates)) + (metrics ? "metrics:\n  listen: 127.0.0.1:0\n" : "") + """
            shared_state:
              postgres: \(cluster.url)
              password_file: pg.pass
              node: \(node)
              poll_interval: \(pollInterval)

            """
    }

    static func startNode(
        _ name: String, cluster: PostgresCluster, folder: FixtureFolder? = nil, pollInterval: String = "1h", metrics: Bool = false
    ) async throws -> Node {
        let folder = try folder ?? GatewayInteropTests.fixture()
        try folder.write(cluster.password + "\n", to: "pg.pass")
        let gateway = try await GatewayProcess(
            config: config(node: name, cluster: cluster, pollInterval: pollInterval, metrics: metrics), folder: folder)
        return Node(name: name, gateway: gateway, folder: folder)
    }

    /// Starts three nodes one after the other (node-1 seeds the fleet with its configuration's set).
    /// Stops the nodes, checks that no log holds the database password, removes their folders.
    static func stopAll(_ nodes: [Node], cluster: PostgresCluster) {
        for node in nodes {
            node.gateway.stop()
            #expect(!node.gateway.logText.contains(cluster.password), "\(node.name) logged the database password")
            node.folder.remove()
        }
    }

    /// Every node's log is checked for the database password at the end.
    static func withFleet(pollInterval: String = "1h", _ body: (PostgresCluster, [Node]) async throws -> Void) async throws {
        let cluster = try await PostgresCluster()
        var nodes: [Node] = []
        defer { Self.stopAll(nodes, cluster: cluster) }
        for index in 1...3 {
            nodes.append(try await startNode("node-\(index)", cluster: cluster, pollInterval: pollInterval, metrics: true))
        }
        try await body(cluster, nodes)
    }

    static func status(_ node: Node) async throws -> Certgate_Control_V1_Status {
        try await ControlInteropTests.withControl(socket: node.socket) { try await $0.getStatus(Certgate_Control_V1_GetStatusRequest()) }
    }

    /// The leaf a handshake for `serverName` gets from `node`, verified against the interop CA
    /// with host name verification (nil: the handshake failed).
    static func servedLeaf(_ node: Node, _ serverName: String) async -> [UInt8]? {
        let probe = TLSProbe(group: GatewayInteropTests.group, trustRoots: [try! NIOSSLCertificate(bytes: GatewayInteropTests.authority.parsed.der, format: .der)])
        guard let connection = try? await probe.connect(port: node.port, serverName: serverName) else { return nil }
        await connection.close()
        return connection.servedLeaf
    }

    /// Upserts `leaf` as `name` through `node`'s socket: nil when applied, else the code.
    static func upsert(_ leaf: TestCertificate, named name: String, through node: Node) async throws -> RPCError.Code? {
        do {
            _ = try await ControlInteropTests.withControl(socket: node.socket) { control in
                try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry(name, leaf)] })
            }
            return nil
        } catch let error as RPCError {
            return error.code
        }
    }

    static func fleetGeneration(_ cluster: PostgresCluster) async throws -> UInt64 {
        UInt64(try await cluster.psql("SELECT generation FROM certgate_fleet").trimmingCharacters(in: .whitespacesAndNewlines)) ?? .max
    }

    @Test("an upsert through node-1's socket is served by node-2 and node-3, told by notification (their periodic check is 1 h, the test waits 10 s; the latency is bench/fleet.py's); status shows each node's name and the fleet's generation")
    func upsertReachesEveryNode() async throws {
        try await Self.withFleet { cluster, nodes in
            let leaf = GatewayInteropTests.authority.leaf(dnsNames: ["pushed.test"])
            let reply = try await ControlInteropTests.withControl(socket: nodes[0].socket) { control in
                try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("pushed", leaf)] })
            }
            #expect(reply.generation == 1 && reply.added == ["pushed"])
            #expect(try await Self.fleetGeneration(cluster) == 1)
            for node in nodes[1...] {
                let served = try await eventually(timeout: .seconds(10)) { await Self.servedLeaf(node, "pushed.test") == leaf.parsed.der }
                #expect(served, "\(node.name) did not serve the pushed certificate")
            }
            // Every node says who committed it.
            for node in nodes {
                #expect(try await node.gateway.waitForLog(
                    "added=1 changed=0 committed_by=node-1 generation=1 removed=0 source=control [Gateway] certificate set committed"), "\(node.name)")
            }
            for (index, node) in nodes.enumerated() {
                let status = try await Self.status(node)
                #expect(status.generation == 1)
                #expect(status.sharedState.fleetGenerationKnown)
                #expect(status.certificates == 5)
                #expect(status.lastUpdateSource == "control")
                #expect(status.sharedState.node == "node-\(index + 1)")
                #expect(status.sharedState.fleetGeneration == 1)
                #expect(status.sharedState.connected)
            }
        }
    }

    @Test("200 updates spread over the three sockets at once converge: every node at the fleet's generation (201 commits: 200 + the seed), with the same names and fingerprints")
    func concurrentUpdatesConverge() async throws {
        try await Self.withFleet { cluster, nodes in
            let leaves = (0..<20).map { GatewayInteropTests.authority.leaf(dnsNames: ["n\($0).test"]) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, node) in nodes.enumerated() {
                    group.addTask {
                        try await ControlInteropTests.withControl(socket: node.socket) { control in
                            var update = index
                            while update < 200 {
                                // Names shared by the nodes: the same entry is changed by several.
                                let name = "n\(update % 20)"
                                _ = try await control.updateCertificates(.with {
                                    $0.upsert = [ControlInteropTests.entry(name, leaves[(update * 7) % 20])]
                                })
                                update += 3
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await Self.fleetGeneration(cluster) == 200)
            let converged = try await eventually(timeout: .seconds(5)) {
                var generations: [UInt64] = []
                for node in nodes { generations.append(try await Self.status(node).generation) }
                return generations == [200, 200, 200]
            }
            #expect(converged)
            var listings: [[String]] = []
            for node in nodes {
                let list = try await ControlInteropTests.withControl(socket: node.socket) { try await $0.listCertificates(Certgate_Control_V1_ListCertificatesRequest()) }
                listings.append(list.certificates.map { "\($0.name)=\($0.sha256Fingerprint)" }.sorted())
            }
            #expect(listings[0].count == 24)
            #expect(listings[1] == listings[0])
            #expect(listings[2] == listings[0])
        }
    }

    @Test("two nodes sending the same expected_generation at once: exactly one applies, the other gets FAILED_PRECONDITION naming the fleet's generation (ten rounds)")
    func compareAndSwapIsFleetWide() async throws {
        try await Self.withFleet { cluster, nodes in
            for round in 0..<10 {
                let expected = UInt64(round)
                let leaf = GatewayInteropTests.authority.leaf(dnsNames: ["race\(round).test"])
                let codes = try await withThrowingTaskGroup(of: RPCError.Code?.self) { group in
                    for node in nodes[0...1] {
                        group.addTask {
                            await ControlInteropTests.code {
                                _ = try await ControlInteropTests.withControl(socket: node.socket) { control in
                                    try await control.updateCertificates(.with {
                                        $0.upsert = [ControlInteropTests.entry("race-\(node.name)", leaf)]
                                        $0.expectedGeneration = expected
                                    })
                                }
                            }
                        }
                    }
                    var codes: [RPCError.Code?] = []
                    for try await code in group { codes.append(code) }
                    return codes
                }
                #expect(codes.filter { $0 == nil }.count == 1, "round \(round): \(codes)")
                #expect(codes.filter { $0 == .failedPrecondition }.count == 1, "round \(round): \(codes)")
                #expect(try await Self.fleetGeneration(cluster) == expected + 1)
            }
        }
    }

    @Test("PostgreSQL stopped: every node serves on, updates get UNAVAILABLE, status says unreachable; a node restarted meanwhile serves its local snapshot; PostgreSQL back: all catch up with the next update")
    func outage() async throws {
        try await Self.withFleet(pollInterval: "500ms") { cluster, started in
            let before = GatewayInteropTests.authority.leaf(dnsNames: ["before.test"])
            _ = try await ControlInteropTests.withControl(socket: started[0].socket) { control in
                try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("before", before)] })
            }
            for node in started {
                #expect(try await eventually(timeout: .seconds(2)) { await Self.servedLeaf(node, "before.test") == before.parsed.der })
            }
            try await cluster.stop()
            let during = GatewayInteropTests.authority.leaf(dnsNames: ["during.test"])
            for node in started {
                #expect(try await Self.upsert(during, named: "during", through: node) == .unavailable, "\(node.name)")
                #expect(await Self.servedLeaf(node, "before.test") == before.parsed.der, "\(node.name) stopped serving")
                let status = try await Self.status(node)
                #expect(!status.sharedState.connected)
                #expect(status.sharedState.reason.hasPrefix("cannot reach the database: "), "\(status.sharedState.reason)")
                #expect(status.generation == 1)
                if let metricsPort = node.metricsPort {
                    let scrape = try await scrapeMetrics(port: metricsPort)
                    #expect(scrape.value("certgate_shared_state_connected") == 0, "\(node.name)")
                    #expect(scrape.value("certgate_shared_state_lag_generations") == 0, "\(node.name)")
                }
            }
            // A node restarted during the outage serves its snapshot.
            started[2].gateway.stop()
            let restarted = try await Self.startNode("node-3", cluster: cluster, folder: started[2].folder, pollInterval: "500ms", metrics: true)
            let nodes = [started[0], started[1], restarted]
            #expect(restarted.gateway.logText.contains("shared state unreachable at start: serving the local snapshot until it returns"))
            #expect(await Self.servedLeaf(restarted, "before.test") == before.parsed.der)
            #expect(try await Self.status(restarted).generation == 1)
            // A new node with no snapshot serves its configuration's set; the fleet's generation is unknown to it.
            let newcomer = try await Self.startNode("node-4", cluster: cluster, pollInterval: "500ms")
            defer {
                newcomer.gateway.stop()
                newcomer.folder.remove()
            }
            #expect(newcomer.gateway.logText.contains("shared state unreachable at start: serving the configuration's certificates until it returns"))
            let unknown = try await Self.status(newcomer)
            #expect(unknown.generation == 0 && !unknown.sharedState.fleetGenerationKnown && unknown.sharedState.fleetGeneration == 0)
            let printed = try await CertgateProcess.run(["ctl", "--socket", newcomer.socket, "status"])
            #expect(printed.stdout.contains("fleet        generation unknown (the database was not reached since the start); this node serves 0\n"), "\(printed.stdout)")

            try await cluster.start()
            // Each node reconnects (backoff up to 5 s); an update then commits and reaches all.
            let deadline = ContinuousClock.now + .seconds(15)
            var applied = false
            while !applied, ContinuousClock.now < deadline {
                applied = try await Self.upsert(during, named: "during", through: nodes[1]) == nil
                if !applied { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(applied)
            for node in nodes + [newcomer] {
                #expect(try await eventually(timeout: .seconds(10)) { await Self.servedLeaf(node, "during.test") == during.parsed.der }, "\(node.name)")
                let status = try await Self.status(node)
                #expect(status.generation == 2 && status.sharedState.connected && status.sharedState.fleetGeneration == 2, "\(node.name)")
                if let metricsPort = node.metricsPort {
                    await #expect(try scrapeMetrics(port: metricsPort).value("certgate_shared_state_connected") == 1, "\(node.name)")
                }
            }
            restarted.gateway.stop()
        }
    }

    @Test("a SIGHUP on one node commits its file's certificates as the fleet's set and every node serves them; during a database outage a SIGHUP is not applied (the log says why) and the node serves on; once the database is back the same SIGHUP applies fleet-wide")
    func reloadIsAFleetUpdate() async throws {
        try await Self.withFleet(pollInterval: "500ms") { cluster, nodes in
            let first = nodes[0]
            let reloaded = GatewayInteropTests.authority.leaf(dnsNames: ["reloaded.test"])
            let later = GatewayInteropTests.authority.leaf(dnsNames: ["later.test"])
            for (name, leaf) in [("reloaded", reloaded), ("later", later)] {
                try first.folder.write(leaf.pem, to: "certs/\(name).pem")
                try first.folder.write(leaf.key.pkcs8PEM, to: "certs/\(name).key")
            }
            func config(_ extra: String) -> String {
                Self.config(node: "node-1", cluster: cluster, pollInterval: "500ms", metrics: first.metricsPort != nil, extraCertificates: extra)
            }
            let withReloaded = "  reloaded: { tls_cert: certs/reloaded.pem, tls_key: certs/reloaded.key }"
            try first.gateway.reload(with: config(withReloaded))
            #expect(try await first.gateway.waitForLog("source=signal [Gateway] certificate set committed"), "\(first.gateway.logText)")
            for node in nodes {
                #expect(try await eventually(timeout: .seconds(10)) { await Self.servedLeaf(node, "reloaded.test") == reloaded.parsed.der }, "\(node.name)")
            }
            #expect(try await Self.fleetGeneration(cluster) == 1)
            #expect(try await cluster.psql("SELECT source, node FROM certgate_fleet").trimmingCharacters(in: .whitespacesAndNewlines) == "signal|node-1")

            try await cluster.stop()
            try first.gateway.reload(with: config(withReloaded + "\n  later: { tls_cert: certs/later.pem, tls_key: certs/later.key }"))
            #expect(try await first.gateway.waitForLog("configuration reload not applied (shared state unreachable); the previous configuration keeps serving"), "\(first.gateway.logText)")
            for node in nodes {
                #expect(await Self.servedLeaf(node, "reloaded.test") == reloaded.parsed.der, "\(node.name) stopped serving")
                #expect(await Self.servedLeaf(node, "later.test") == nil, "\(node.name) serves a set the fleet never committed")
                #expect(try await Self.status(node).generation == 1)
            }

            try await cluster.start()
            // Each node reconnects (backoff up to 5 s); the same file, signalled again, then
            // applies. A signal is sent again only once the last one was refused, so that
            // exactly one commits.
            let notApplied = "configuration reload not applied (shared state unreachable)"
            func count(_ text: String) -> Int { first.gateway.logText.components(separatedBy: text).count - 1 }
            var applied = false
            let deadline = ContinuousClock.now + .seconds(30)
            while !applied, ContinuousClock.now < deadline {
                let refusals = count(notApplied)
                first.gateway.signal(SIGHUP)
                #expect(try await eventually(timeout: .seconds(20)) {
                    count("source=signal [Gateway] certificate set committed") == 2 || count(notApplied) > refusals
                }, "\(first.gateway.logText)")
                applied = count("source=signal [Gateway] certificate set committed") == 2
                if !applied { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(applied, "\(first.gateway.logText)")
            for node in nodes {
                #expect(try await eventually(timeout: .seconds(10)) { await Self.servedLeaf(node, "later.test") == later.parsed.der }, "\(node.name)")
            }
            #expect(try await Self.fleetGeneration(cluster) == 2)
        }
    }

    @Test("a commit writes only the rows it changes (the others keep their PostgreSQL row version); a node restarted behind the fleet loads only what changed since its snapshot, removals included; one further behind than the removals kept loads the whole set")
    func changedRowsAndCatchingUp() async throws {
        let cluster = try await PostgresCluster()
        var nodes: [Node] = []
        defer { Self.stopAll(nodes, cluster: cluster) }
        nodes.append(try await Self.startNode("node-1", cluster: cluster))
        nodes.append(try await Self.startNode("node-2", cluster: cluster))
        func rowVersions() async throws -> [String: String] {
            let lines = try await cluster.psql("SELECT name || ' ' || xmin::text FROM certgate_certificates").split(separator: "\n")
            return Dictionary(uniqueKeysWithValues: lines.map { line in
                let parts = line.split(separator: " ")
                return (String(parts[0]), String(parts[1]))
            })
        }
        let seeded = try await rowVersions()
        #expect(seeded.keys.sorted() == ["by-ip", "exact", "fallback", "wild"])
        // A SIGHUP whose file adds one entry: the four unchanged rows are not written again.
        let added = GatewayInteropTests.authority.leaf(dnsNames: ["added.test"])
        try nodes[0].folder.write(added.pem, to: "certs/added.pem")
        try nodes[0].folder.write(added.key.pkcs8PEM, to: "certs/added.key")
        try nodes[0].gateway.reload(with: Self.config(
            node: "node-1", cluster: cluster, extraCertificates: "  added: { tls_cert: certs/added.pem, tls_key: certs/added.key }"))
        #expect(try await nodes[0].gateway.waitForLog("source=signal [Gateway] certificate set committed"), "\(nodes[0].gateway.logText)")
        let afterReload = try await rowVersions()
        #expect(afterReload.keys.sorted() == ["added", "by-ip", "exact", "fallback", "wild"])
        #expect(afterReload.filter { $0.key != "added" } == seeded)
        // An upsert of one entry rewrites that row alone.
        let exact = GatewayInteropTests.authority.leaf(dnsNames: ["exact.test"])
        #expect(try await Self.upsert(exact, named: "exact", through: nodes[0]) == nil)
        let afterUpsert = try await rowVersions()
        #expect(afterUpsert["exact"] != afterReload["exact"])
        #expect(afterUpsert.filter { $0.key != "exact" } == afterReload.filter { $0.key != "exact" })
        #expect(try await eventually { try await Self.status(nodes[1]).generation == 2 })

        func names(_ node: Node) async throws -> [String] {
            try await ControlInteropTests.withControl(socket: node.socket) { control in
                try await control.listCertificates(Certgate_Control_V1_ListCertificatesRequest()).certificates.map(\.name).sorted()
            }
        }
        func loadedLine(_ node: Node) -> String? {
            node.gateway.logText.split(separator: "\n").first { $0.contains("serving the fleet's certificate set") }
                .flatMap { line in line.firstMatch(of: /loaded=(.*?) node=/).map { String($0.1) } }
        }
        // node-2 away for one removal: at its restart it loads what changed since its snapshot.
        nodes[1].gateway.stop()
        try await ControlInteropTests.withControl(socket: nodes[0].socket) { control in
            _ = try await control.updateCertificates(.with { $0.delete = ["wild"] })
        }
        let rejoined = try await Self.startNode("node-2", cluster: cluster, folder: nodes[1].folder)
        nodes[1] = rejoined
        #expect(loadedLine(rejoined) == "0 changed, 1 removed since the local snapshot", "\(rejoined.gateway.logText)")
        #expect(try await names(rejoined) == ["added", "by-ip", "exact", "fallback"])
        #expect(try await Self.status(rejoined).generation == 3)

        // Away again, and further behind than the removals the fleet keeps (the window is
        // 10,000 generations; here it is moved by hand, as 10,000 commits would move it).
        nodes[1].gateway.stop()
        try await ControlInteropTests.withControl(socket: nodes[0].socket) { control in
            _ = try await control.updateCertificates(.with { $0.delete = ["by-ip"] })
        }
        try await cluster.psql("UPDATE certgate_fleet SET forgotten_through = 4; DELETE FROM certgate_removed")
        let farBehind = try await Self.startNode("node-2", cluster: cluster, folder: nodes[1].folder)
        nodes[1] = farBehind
        #expect(loadedLine(farBehind) == "whole set", "\(farBehind.gateway.logText)")
        #expect(try await names(farBehind) == ["added", "exact", "fallback"])
        #expect(try await Self.status(farBehind).generation == 4)
    }

    @Test("kill -9 of a node during a stream of updates; restarted, it serves the latest committed set")
    func killedNodeCatchesUp() async throws {
        try await Self.withFleet { cluster, nodes in
            let leaves = (0..<5).map { GatewayInteropTests.authority.leaf(dnsNames: ["s\($0).test"]) }
            var second = nodes[1]
            for update in 0..<60 {
                if update == 20 { second.gateway.kill9() }
                _ = try await ControlInteropTests.withControl(socket: nodes[0].socket) { control in
                    try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("s\(update % 5)", leaves[update % 5])] })
                }
                if update == 40 { second = try await Self.startNode("node-2", cluster: cluster, folder: second.folder) }
            }
            let restarted = second
            let latest = try await Self.fleetGeneration(cluster)
            #expect(latest == 60)
            #expect(try await eventually(timeout: .seconds(2)) { try await Self.status(restarted).generation == latest })
            for index in 0..<5 {
                #expect(await Self.servedLeaf(restarted, "s\(index).test") == leaves[index].parsed.der)
            }
            restarted.gateway.stop()
        }
    }

    @Test("check --connect reaches the database: says there is no fleet yet, then its generation; a wrong password fails with the server's reason (exit 1) and no output holds it; run refuses to start with the wrong password, and on a database set up by a newer certgate")
    func checkConnectAndNewerSchema() async throws {
        let cluster = try await PostgresCluster()
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        try folder.write(Self.config(node: "edge-1", cluster: cluster).replacingOccurrences(of: "PORT", with: "18999"), to: "certgate.yaml")
        let configPath = folder.url.appendingPathComponent("certgate.yaml").path
        try folder.write(cluster.password + "\n", to: "pg.pass")
        let empty = try await CertgateProcess.run(["check", "--config", configPath, "--connect"])
        #expect(empty.status == 0)
        #expect(empty.stdout.contains("\nshared state: reached certgate@127.0.0.1:\(cluster.port)/certgate: no fleet there yet (the first node to start sets it up)\n"), "\(empty.stdout)")

        let node = try await Self.startNode("edge-1", cluster: cluster, folder: folder)
        node.gateway.stop()
        let joined = try await CertgateProcess.run(["check", "--config", configPath, "--connect"])
        #expect(joined.status == 0)
        #expect(joined.stdout.contains("\nshared state: reached certgate@127.0.0.1:\(cluster.port)/certgate: the fleet is at generation 0 (last committed by edge-1)\n"), "\(joined.stdout)")

        let wrong = "not-the-password-\(UUID().uuidString)"
        try folder.write(wrong + "\n", to: "pg.pass")
        let refused = try await CertgateProcess.run(["check", "--config", configPath, "--connect"])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("\nconfiguration is valid: 4 certificates\n"), "\(refused.stdout)")
        #expect(refused.stdout.contains(
            "\nshared state: cannot connect to certgate@127.0.0.1:\(cluster.port)/certgate: password authentication failed (SQLSTATE 28P01); the password came from shared_state.password_file\n"),
            "\(refused.stdout)")
        #expect(refused.stdout.contains("note: ") && refused.stdout.contains("holds this node's local snapshot of the fleet's set (generation 0, 4 certificates); certgate run serves the fleet's set"), "\(refused.stdout)")
        for output in [empty, joined, refused] {
            #expect(!(output.stdout + output.stderr).contains(wrong))
            #expect(!(output.stdout + output.stderr).contains(cluster.password))
        }
        let json = try await CertgateProcess.run(["--json", "check", "--config", configPath, "--connect"].filter { $0 != "--json" } + ["--json"])
        #expect(!json.stdout.contains(wrong))
        // run with the wrong password does not start, though the node has a local snapshot.
        let wrongRun = try await CertgateProcess.run(["run", "--config", configPath])
        #expect(wrongRun.status == 1)
        #expect(wrongRun.stderr.contains("shared state: cannot connect to certgate@127.0.0.1:\(cluster.port)/certgate: password authentication failed (SQLSTATE 28P01); the password came from shared_state.password_file"), "\(wrongRun.stderr)")
        #expect(!wrongRun.stderr.contains("] serving"), "\(wrongRun.stderr)")
        #expect(!wrongRun.stderr.contains(wrong) && !wrongRun.stderr.contains(cluster.password))

        try folder.write(cluster.password + "\n", to: "pg.pass")
        try await cluster.psql("INSERT INTO certgate_schema (version, applied_at) VALUES ('v99-future', 0)")
        let newer = try await CertgateProcess.run(["run", "--config", configPath])
        #expect(newer.status == 1)
        #expect(newer.stderr.contains("shared state: cannot set up the tables: the database was set up by a newer certgate (schema v99-future); run that version"), "\(newer.stderr)")
        #expect(!newer.stderr.contains(cluster.password))
    }

    @Test("a single node moving to a fleet seeds it with its local snapshot, keeping its set and generation; a node joining serves the same; ctl watch on the joiner shows a commit made through the first node with that node's name (as a line and as JSON); ctl status shows the node, the fleet's generation and the connection")
    func singleNodeMovesToAFleet() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let moved = GatewayInteropTests.authority.leaf(dnsNames: ["moved.test"])
        // Alone: two updates through its socket, generation 2.
        do {
            let alone = try await GatewayProcess(config: ControlInteropTests.config(GatewayInteropTests.config()), folder: folder)
            defer { alone.stop() }
            try await ControlInteropTests.withControl(socket: ControlInteropTests.socket(folder)) { control in
                _ = try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("moved", GatewayInteropTests.authority.leaf(dnsNames: ["moved.test"]))] })
                let second = try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("moved", moved)]; $0.delete = ["by-ip"] })
                #expect(second.generation == 2)
            }
        }
        let cluster = try await PostgresCluster()
        var nodes: [Node] = []
        defer { Self.stopAll(nodes, cluster: cluster) }
        nodes.append(try await Self.startNode("edge-1", cluster: cluster, folder: folder))
        #expect(try await Self.fleetGeneration(cluster) == 2)
        #expect(try await Self.status(nodes[0]).generation == 2)
        nodes.append(try await Self.startNode("edge-2", cluster: cluster))
        for node in nodes {
            #expect(try await Self.status(node).generation == 2, "\(node.name)")
            #expect(await Self.servedLeaf(node, "moved.test") == moved.parsed.der, "\(node.name)")
            let names = try await ControlInteropTests.withControl(socket: node.socket) { control in
                try await control.listCertificates(Certgate_Control_V1_ListCertificatesRequest()).certificates.map(\.name)
            }
            #expect(names.sorted() == ["exact", "fallback", "moved", "wild"], "\(node.name)")
        }

        let table = try RunningCommand(["ctl", "--socket", nodes[1].socket, "watch"])
        defer { table.stop() }
        let json = try RunningCommand(["ctl", "--socket", nodes[1].socket, "watch", "--json"])
        defer { json.stop() }
        let base = try await ControlCommandInteropTests.subscribe([table, json], socket: nodes[1].socket)
        #expect(try await Self.upsert(GatewayInteropTests.authority.leaf(dnsNames: ["later.test"]), named: "later", through: nodes[0]) == nil)
        let next = base + 1
        #expect(try await eventually {
            table.lines.contains { $0.contains(" generation \(next) ") } && json.lines.contains { $0.contains("\"generation\":\"\(next)\"") }
        }, "table: \(table.lines) json: \(json.lines)")
        let line = try #require(table.lines.first { $0.contains(" generation \(next) ") })
        #expect(ControlCommandInteropTests.stamped(line).rest == "generation \(next) (control on edge-1): +1 ~0 -0")
        let event = try #require(json.lines.first { $0.contains("\"generation\":\"\(next)\"") })
        #expect(ControlCommandInteropTests.masking(event, key: "time").text
            == #"{"time":"…","set_changed":{"generation":"\#(next)","source":"control","added":["later"],"node":"edge-1"}}"#, "\(event)")
        // The probes the subscription pushed went through edge-2's own socket.
        let probeLine = try #require(table.lines.first { $0.contains(" generation \(base) ") })
        #expect(ControlCommandInteropTests.stamped(probeLine).rest.hasPrefix("generation \(base) (control on edge-2): "), "\(probeLine)")

        let status = try await runCtl(socket: nodes[1].socket, ["status"])
        #expect(status.status == 0)
        for expected in ["\nnode         edge-2\n", "\nfleet        generation \(next); this node serves \(next)\n", "\ndatabase     connected\n"] {
            #expect(status.stdout.contains(expected), "\(status.stdout)")
        }
    }

    @Test("in a fleet the local CA's issuer entry is shared, its issued leaves are not: each node signs its own leaf for a name (both verify), none is written to the database, and each node keeps its own in its local state")
    func issuedLeavesStayPerNode() async throws {
        let cluster = try await PostgresCluster()
        var nodes: [Node] = []
        defer { Self.stopAll(nodes, cluster: cluster) }
        let authority = GatewayInteropTests.authority
        for name in ["node-1", "node-2"] {
            let folder = try GatewayInteropTests.fixture()
            try folder.write(authority.key.pkcs8PEM, to: "ca.key")
            try folder.write(cluster.password + "\n", to: "pg.pass")
            let gateway = try await GatewayProcess(config: Self.config(
                node: name, cluster: cluster, extraCertificates: "  issuer: { tls_cert: ca.pem, tls_key: ca.key, is_ca: true, domains: \"*.dev.test\" }"),
                folder: folder)
            nodes.append(Node(name: name, gateway: gateway, folder: folder))
        }
        let leaves = [await Self.servedLeaf(nodes[0], "api.dev.test"), await Self.servedLeaf(nodes[1], "api.dev.test")]
        let first = try #require(leaves[0]), second = try #require(leaves[1])
        #expect(first != second)
        #expect(await Self.servedLeaf(nodes[0], "api.dev.test") == first)  // each node's own, cached
        #expect(try await cluster.psql("SELECT name FROM certgate_certificates ORDER BY name").split(separator: "\n") == ["by-ip", "exact", "fallback", "issuer", "wild"])
        // No leaf's bytes anywhere in the fleet's tables (as PEM text or as bytea).
        var dump = ""
        let tables = try await cluster.psql("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'certgate_%' ORDER BY 1").split(separator: "\n")
        #expect(tables.contains("certgate_certificates") && tables.contains("certgate_challenges"))
        for table in tables {
            dump += try await cluster.psql("SELECT coalesce(string_agg(t::text, ' '), '') FROM \(table) t")
        }
        #expect(dump.contains(Data(GatewayInteropTests.authority.parsed.der).base64EncodedString().prefix(64).dropFirst(16)))  // the issuer's own certificate is there
        for leaf in [first, second] {
            #expect(!dump.contains(Data(leaf).base64EncodedString().prefix(64).dropFirst(16)))
            #expect(!dump.contains(leaf.suffix(32).map { String(format: "%02x", $0) }.joined()))
        }
        for node in nodes {
            node.gateway.stop()
            let database = try DatabaseQueue(path: node.folder.url.appendingPathComponent("state/certgate.db").path)
            defer { try? database.close() }
            let stored = try await database.read { try String.fetchAll($0, sql: "SELECT name FROM issued_leaves") }
            #expect(stored == ["api.dev.test"], "\(node.name)")
        }
    }

    @Test("sslmode against a server offering TLS with a certificate no system root trusts: disable, allow, prefer and require reach it (check --connect), a running node's connections are encrypted with require and in the clear with disable (pg_stat_ssl); verify-ca and verify-full refuse it (exit 1, the TLS handshake failed); require against a server without TLS says it is not offered")
    func sslModes() async throws {
        let leaf = GatewayInteropTests.authority.leaf(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        let cluster = try await PostgresCluster(tls: (leaf.pem, leaf.key.pkcs8PEM))
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        try folder.write(cluster.password + "\n", to: "pg.pass")
        func config(_ node: String, _ mode: String, on cluster: PostgresCluster) -> String {
            Self.config(node: node, cluster: cluster).replacingOccurrences(of: "sslmode=disable", with: "sslmode=\(mode)")
        }
        func check(_ mode: String, on cluster: PostgresCluster) async throws -> CertgateProcess.Output {
            try folder.write(config("edge-1", mode, on: cluster).replacingOccurrences(of: "PORT", with: "18999"), to: "certgate.yaml")
            return try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path, "--connect"])
        }
        let location = "certgate@127.0.0.1:\(cluster.port)/certgate"
        for mode in ["disable", "allow", "prefer", "require"] {
            let reached = try await check(mode, on: cluster)
            #expect(reached.status == 0, "\(mode): \(reached.stdout)")
            #expect(reached.stdout.contains("\nshared state: reached \(location): no fleet there yet (the first node to start sets it up)\n"), "\(mode): \(reached.stdout)")
        }
        for mode in ["verify-ca", "verify-full"] {
            let refused = try await check(mode, on: cluster)
            #expect(refused.status == 1, "\(mode): \(refused.stdout)")
            #expect(refused.stdout.contains("\nshared state: cannot connect to \(location): cannot reach the database: the TLS handshake failed\n"), "\(mode): \(refused.stdout)")
        }

        // A running node's own connections (psql's are never over TLS).
        for (mode, encrypted) in [("require", "t"), ("disable", "f")] {
            let nodeFolder = try GatewayInteropTests.fixture()
            defer { nodeFolder.remove() }
            try nodeFolder.write(cluster.password + "\n", to: "pg.pass")
            let gateway = try await GatewayProcess(config: config("edge-\(mode)", mode, on: cluster), folder: nodeFolder)
            defer { gateway.stop() }
            let rows = try await cluster.psql("""
                SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'certgate edge-\(mode)'
                """).split(separator: "\n")
            #expect(!rows.isEmpty && rows.allSatisfy { $0 == encrypted }, "\(mode): \(rows)")
        }

        let plain = try await PostgresCluster()
        let required = try await check("require", on: plain)
        #expect(required.status == 1)
        #expect(required.stdout.contains("\nshared state: cannot connect to certgate@127.0.0.1:\(plain.port)/certgate: the server does not offer TLS, which sslmode requires\n"), "\(required.stdout)")
        try folder.write(plain.password + "\n", to: "pg.pass")
        await #expect(try check("prefer", on: plain).status == 0)
    }

    /// Three nodes on `cluster` with Pebble's CAs (`acme`, YAML lines under `acme:`), each
    /// node's listeners from `listeners(index)` (YAML list items) and `certificates`; the
    /// node whose TLS listener is `fixedPort` is told so. Stops them and checks their logs
    /// hold no password at the end.
    static func withACMEFleet(
        cluster: PostgresCluster, pebble: PebbleServer, acme: String, certificates: String, fixedPort: (index: Int, port: Int),
        listeners: (Int) -> String, _ body: ([Node]) async throws -> Void
    ) async throws {
        var nodes: [Node] = []
        defer { Self.stopAll(nodes, cluster: cluster) }
        for index in 1...3 {
            let folder = try FixtureFolder()
            try folder.write(pebble.httpsRootPEM, to: "pebble-https-root.pem")
            try folder.write(cluster.password + "\n", to: "pg.pass")
            let config = """
                log_level: info
                shutdown_timeout: 2s
                listeners:
                \(listeners(index))
                routes:
                  - server_names: ["*"]
                    respond: { body: "ok\\n" }
                acme:
                \(acme)
                certificates:
                \(certificates)
                control:
                  socket: run/control.sock
                shared_state:
                  postgres: \(cluster.url)
                  password_file: pg.pass
                  node: node-\(index)
                  poll_interval: 1h

                """
            let gateway = try await GatewayProcess(config: config, folder: folder)
            nodes.append(Node(name: "node-\(index)", gateway: gateway, folder: folder, fixedPort: index == fixedPort.index ? fixedPort.port : nil))
        }
        try await body(nodes)
    }

    /// Three nodes with the CA `pebble` (tls-alpn-01, which Pebble validates at node-1's
    /// listener) and `certificates`, on a new cluster.
    static func withPebbleFleet(
        certificates: String, _ body: (PostgresCluster, PebbleServer, NIOSSLCertificate, [Node]) async throws -> Void
    ) async throws {
        let cluster = try await PostgresCluster()
        let firstPort = unusedLocalPort()
        let pebble = try await PebbleServer(validationPorts: (http: unusedLocalPort(), tls: firstPort))
        let root = try NIOSSLCertificate(bytes: Array(try await pebble.issuingRoot().utf8), format: .pem)
        try await Self.withACMEFleet(
            cluster: cluster, pebble: pebble,
            acme: "  pebble: { directory: \"\(pebble.directoryURL)\", ca_roots: pebble-https-root.pem, challenges: [tls-alpn-01] }",
            certificates: certificates,
            fixedPort: (1, firstPort),
            listeners: { index in "  - name: https\n    listen: 127.0.0.1:\(index == 1 ? String(firstPort) : "PORT")" }
        ) { nodes in
            try await body(cluster, pebble, root, nodes)
        }
    }

    /// Whether `node` serves a certificate for `name` that verifies with `probe`'s roots (within 60 s).
    static func servesVerified(_ node: Node, _ name: String, probe: TLSProbe) async throws -> Bool {
        try await eventually(timeout: .seconds(60)) {
            guard let connection = try? await probe.connect(port: node.port, serverName: name) else { return false }
            await connection.close()
            return connection.servedLeaf != nil
        }
    }

    @Test("three nodes start with the same new acme entry: one order fleet-wide (Pebble validates node-1's tls-alpn-01 answer), the certificate is stored in the fleet and every node serves the same one, verifying with Pebble's root; nodes 2 and 3 order nothing")
    func oneOrderForTheFleet() async throws {
        try await Self.withPebbleFleet(certificates: "  shop: { acme: pebble, domains: \"shop.example.test\" }") { cluster, pebble, root, nodes in
            let probe = TLSProbe(group: GatewayInteropTests.group, trustRoots: [root])
            var leaves: [[UInt8]] = []
            for node in nodes {
                let lastError = Collected<String>()
                let served = try await eventually(timeout: .seconds(60)) {
                    do {
                        let connection = try await probe.connect(port: node.port, serverName: "shop.example.test")
                        await connection.close()
                        return connection.servedLeaf != nil
                    } catch {
                        lastError.append("\(error)")
                        return false
                    }
                }
                #expect(served, "\(node.name) does not serve a certificate from Pebble for shop.example.test (\(lastError.all.last ?? "")):\n\(node.gateway.logText)")
                if let connection = try? await probe.connect(port: node.port, serverName: "shop.example.test"), let leaf = connection.servedLeaf {
                    leaves.append(leaf)
                    await connection.close()
                }
            }
            #expect(leaves.count == 3 && Set(leaves).count == 1, "the nodes serve different certificates")
            #expect(try await cluster.psql("SELECT count(*) FROM certgate_acme_certificates WHERE name = 'shop'").trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            let orders = nodes.map { $0.gateway.logText.components(separatedBy: "[Gateway] ordering a certificate").count - 1 }
            #expect(orders.reduce(0, +) == 1, "orders per node: \(orders)")
            #expect(orders[0] == 1)
            // (Nodes 2 and 3 read the stored certificate at their start, or — started while node-1
            // was still ordering — take it once node-1 stored it: either way, no order.)
            // The fleet's set changed once for it (node-1's commit); the others committed nothing.
            #expect(try await cluster.psql("SELECT generation, source, node FROM certgate_fleet").trimmingCharacters(in: .whitespacesAndNewlines) == "1|acme|node-1")

            // A new acme entry sent to node-1 while all run: node-1 orders it; nodes 2 and 3 learn
            // the entry by following the set, find the certificate stored, and order nothing.
            _ = try await ControlInteropTests.withControl(socket: nodes[0].socket) { control in
                try await control.updateCertificates(.with {
                    $0.upsert = [.with {
                        $0.name = "shop2"
                        $0.acme = "pebble"
                        $0.domains = ["shop2.example.test"]
                    }]
                })
            }
            for node in nodes {
                #expect(try await Self.servesVerified(node, "shop2.example.test", probe: probe), "\(node.name) does not serve shop2:\n\(node.gateway.logText)")
            }
            for node in nodes[1...] {
                #expect(try await node.gateway.waitForLog("entry=shop2 not_after="), "\(node.name):\n\(node.gateway.logText)")
                #expect(node.gateway.logText.contains("[Gateway] certificate obtained by another node of the fleet"), "\(node.name):\n\(node.gateway.logText)")
            }
            let allOrders = nodes.map { $0.gateway.logText.components(separatedBy: "[Gateway] ordering a certificate").count - 1 }
            #expect(allOrders == [2, 0, 0], "orders per node: \(allOrders)")
            #expect(try await Self.fleetGeneration(cluster) == 3)  // the upsert (pending), then node-1's commit of the certificate
        }
    }

    @Test("an order placed by node-1 whose challenges Pebble validates at node-2 (tls-alpn-01 and http-01 answers shared through the fleet) succeeds; all three nodes serve both certificates; only node-1 ordered")
    func challengeAnsweredByAnotherNode() async throws {
        let cluster = try await PostgresCluster()
        let (secondTLS, secondHTTP) = (unusedLocalPort(), unusedLocalPort())
        let pebble = try await PebbleServer(validationPorts: (http: secondHTTP, tls: secondTLS))
        let root = try NIOSSLCertificate(bytes: Array(try await pebble.issuingRoot().utf8), format: .pem)
        let acme = """
              pebble-alpn: { directory: "\(pebble.directoryURL)", ca_roots: pebble-https-root.pem, challenges: [tls-alpn-01] }
              pebble-http: { directory: "\(pebble.directoryURL)", ca_roots: pebble-https-root.pem, challenges: [http-01] }
            """
        try await Self.withACMEFleet(
            cluster: cluster, pebble: pebble, acme: acme, certificates: "  {}", fixedPort: (2, secondTLS),
            listeners: { index in
                let (tls, http) = index == 2 ? (String(secondTLS), String(secondHTTP)) : ("PORT", String(unusedLocalPort()))
                return "  - name: https\n    listen: 127.0.0.1:\(tls)\n  - name: http\n    listen: 127.0.0.1:\(http)\n    protocol: http"
            }
        ) { nodes in
            // Every node has said it is alive (the publisher waits for the live ones).
            #expect(try await eventually(timeout: .seconds(10)) {
                try await cluster.psql("SELECT count(*) FROM certgate_nodes").trimmingCharacters(in: .whitespacesAndNewlines) == "3"
            })
            _ = try await ControlInteropTests.withControl(socket: nodes[0].socket) { control in
                try await control.updateCertificates(.with {
                    $0.upsert = [
                        .with { $0.name = "alpn"; $0.acme = "pebble-alpn"; $0.domains = ["alpn.example.test"] },
                        .with { $0.name = "plain"; $0.acme = "pebble-http"; $0.domains = ["plain.example.test"] },
                    ]
                })
            }
            let probe = TLSProbe(group: GatewayInteropTests.group, trustRoots: [root])
            for node in nodes {
                for name in ["alpn.example.test", "plain.example.test"] {
                    #expect(try await Self.servesVerified(node, name, probe: probe), "\(node.name) does not serve a certificate from Pebble for \(name):\n\(nodes[0].gateway.logText)")
                }
            }
            let orders = nodes.map { $0.gateway.logText.components(separatedBy: "[Gateway] ordering a certificate").count - 1 }
            #expect(orders == [2, 0, 0], "orders per node: \(orders)")
            // The answers are gone from the fleet once the orders are over.
            #expect(try await eventually(timeout: .seconds(5)) {
                try await cluster.psql("SELECT count(*) FROM certgate_challenges").trimmingCharacters(in: .whitespacesAndNewlines) == "0"
            })
        }
    }

    @Test("on demand in a fleet: ten handshakes at once for a new name spread over three nodes make one order fleet-wide and all get the same certificate; a name obtained by one node is served by the others from the fleet's state with no order; an on-demand entry sent to one node is known to all")
    func onDemandIsFleetWide() async throws {
        try await Self.withPebbleFleet(certificates: "  customers: { acme: pebble, on_demand: true, domains: \"*.customers.test\" }") { cluster, pebble, root, nodes in
            #expect(try await eventually(timeout: .seconds(10)) {
                try await cluster.psql("SELECT count(*) FROM certgate_nodes").trimmingCharacters(in: .whitespacesAndNewlines) == "3"
            })
            let probe = TLSProbe(group: GatewayInteropTests.group, trustRoots: [root])
            func leaf(_ node: Node, _ name: String) async -> [UInt8]? {
                guard let connection = try? await probe.connect(port: node.port, serverName: name) else { return nil }
                await connection.close()
                return connection.servedLeaf
            }
            let ports = nodes.map(\.port)
            let leaves = await withTaskGroup(of: [UInt8]?.self) { group in
                for index in 0..<10 {
                    let port = ports[index % 3]
                    group.addTask {
                        guard let connection = try? await probe.connect(port: port, serverName: "shop.customers.test") else { return nil }
                        await connection.close()
                        return connection.servedLeaf
                    }
                }
                return await group.reduce(into: [[UInt8]?]()) { $0.append($1) }
            }
            #expect(leaves.count == 10 && leaves.allSatisfy { $0 != nil }, "\(nodes.map(\.gateway.logText).joined(separator: "\n----\n"))")
            #expect(Set(leaves.compactMap { $0 }).count == 1)
            let orders = nodes.map { $0.gateway.logText.components(separatedBy: "[Gateway] ordering a certificate on demand").count - 1 }
            #expect(orders.reduce(0, +) == 1, "orders per node: \(orders)")
            #expect(pebble.logText.components(separatedBy: "Issued certificate serial").count - 1 == 1)
            #expect(try await cluster.psql("SELECT host, entry FROM certgate_acme_on_demand").trimmingCharacters(in: .whitespacesAndNewlines) == "shop.customers.test|customers")

            // Obtained through node 2: nodes 1 and 3 serve it from the fleet's state.
            let viaSecond = await leaf(nodes[1], "second.customers.test")
            #expect(viaSecond != nil)
            #expect(await leaf(nodes[0], "second.customers.test") == viaSecond)
            #expect(await leaf(nodes[2], "second.customers.test") == viaSecond)
            #expect(pebble.logText.components(separatedBy: "Issued certificate serial").count - 1 == 2)

            // A new on-demand entry sent to node 1 (it enters no set, yet the result counts it):
            // node 3 knows it from the fleet.
            let result = try await ControlInteropTests.withControl(socket: nodes[0].socket) { control in
                try await control.updateCertificates(.with {
                    $0.upsert = [.with {
                        $0.name = "tenants"
                        $0.acme = "pebble"
                        $0.onDemand = true
                        $0.domains = ["*.tenants.test"]
                    }]
                })
            }
            #expect(result.added == ["tenants"] && result.changed.isEmpty && result.removed.isEmpty, "\(result)")
            #expect(try await nodes[2].gateway.waitForLog("[Gateway] certificate set committed", occurrences: 1))
            #expect(try await eventually(timeout: .seconds(30)) { await leaf(nodes[2], "one.tenants.test") != nil }, "\(nodes[2].gateway.logText)")
            #expect(try await cluster.psql("SELECT name FROM certgate_acme_entries ORDER BY name").trimmingCharacters(in: .whitespacesAndNewlines) == "customers\ntenants")
        }
    }

    /// Three nodes with a wildcard entry `*.wild.example.test` from Pebble through dns-01, all
    /// running one `dns_hook` that writes into pebble-challtestsrv and records each run as a
    /// line "FOLDER ACTION" in `ran` (FOLDER: the node's own, where it runs). `prelude`: shell
    /// lines run first (`$1` is present or cleanup; `HOOKS` the hook's folder).
    static func withDNSFleet(
        prelude: String = "", _ body: (_ nodes: [Node], _ root: NIOSSLCertificate, _ hooks: FixtureFolder, _ ran: () -> [String]) async throws -> Void
    ) async throws {
        let cluster = try await PostgresCluster()
        let firstPort = unusedLocalPort()
        let pebble = try await PebbleServer(validationPorts: (http: unusedLocalPort(), tls: firstPort))
        defer { pebble.stop() }
        let root = try NIOSSLCertificate(bytes: Array(try await pebble.issuingRoot().utf8), format: .pem)
        let hooks = try FixtureFolder()
        defer { hooks.remove() }
        let ran = hooks.url.appendingPathComponent("ran").path
        try hooks.write("""
            #!/bin/sh
            HOOKS=\(hooks.url.path)
            \(prelude)
            echo "$PWD $1" >> \(ran)
            case "$1" in
              present) exec /usr/bin/curl -sS --fail -X POST -d "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" http://127.0.0.1:\(pebble.challengePorts.management)/set-txt ;;
              cleanup) exec /usr/bin/curl -sS --fail -X POST -d "{\\"host\\":\\"$2\\"}" http://127.0.0.1:\(pebble.challengePorts.management)/clear-txt ;;
            esac
            exit 2
            """, to: "dns-hook.sh")
        chmod(hooks.url.appendingPathComponent("dns-hook.sh").path, 0o755)
        try await Self.withACMEFleet(
            cluster: cluster, pebble: pebble,
            acme: "  pebble: { directory: \"\(pebble.directoryURL)\", ca_roots: pebble-https-root.pem, challenges: [dns-01], dns_hook: [\"\(hooks.url.appendingPathComponent("dns-hook.sh").path)\"] }",
            certificates: "  wild: { acme: pebble, domains: \"*.wild.example.test\" }",
            fixedPort: (1, firstPort),
            listeners: { index in "  - name: https\n    listen: 127.0.0.1:\(index == 1 ? String(firstPort) : "PORT")" }
        ) { nodes in
            try await body(nodes, root, hooks) {
                ((try? String(contentsOfFile: ran, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            }
        }
    }

    /// Once every one of `nodes` serves the wildcard's certificate (verified with `root`):
    /// the one node among them that ordered it (exactly one did).
    static func theOneThatOrdered(among nodes: [Node], root: NIOSSLCertificate) async throws -> Node {
        let probe = TLSProbe(group: GatewayInteropTests.group, trustRoots: [root])
        for node in nodes {
            #expect(try await Self.servesVerified(node, "a.wild.example.test", probe: probe), "\(node.name): \(node.gateway.logText)")
        }
        let ordering = nodes.filter { $0.gateway.logText.contains("[Gateway] ordering a certificate") }
        #expect(ordering.count == 1, "\(nodes.map(\.gateway.logText))")
        return try #require(ordering.first)
    }

    @Test("dns-01 in a fleet: three nodes start with the same wildcard entry; the one node that orders runs its dns_hook (present, then cleanup), the others run none, and all serve the certificate")
    func dnsHookRunsOnTheOrderingNode() async throws {
        try await Self.withDNSFleet { nodes, root, _, lines in
            let orderer = try await Self.theOneThatOrdered(among: nodes, root: root)
            #expect(try await eventually { lines().count == 2 })
            let folder = orderer.folder.url.resolvingSymlinksInPath().path
            #expect(lines() == ["\(folder) present", "\(folder) cleanup"], "ordered by \(orderer.name)")
        }
    }

    @Test("a published challenge answer waits for every live node's confirmation: a node that heartbeated within 15 s and never confirms holds the order 3 s, then it goes on (and says so); one last seen 20 s ago is not waited for")
    func publicationWaitsForLiveNodes() async throws {
        try await Self.withPebbleFleet(certificates: "  first: { acme: pebble, domains: first.example.test }") { cluster, _, root, nodes in
            let probe = TLSProbe(group: GatewayInteropTests.group, trustRoots: [root])
            for node in nodes { #expect(try await Self.servesVerified(node, "first.example.test", probe: probe), "\(node.name)") }
            let notice = "not every node of the fleet confirmed a challenge answer in time"
            func notices() -> [String] {
                nodes.flatMap { node in node.gateway.logText.split(separator: "\n").filter { $0.contains(notice) }.map(String.init) }
            }
            #expect(notices().isEmpty)
            func order(_ name: String) async throws {
                _ = try await ControlInteropTests.withControl(socket: nodes[0].socket) { control in
                    try await control.updateCertificates(.with { $0.upsert = [.with { $0.name = name; $0.acme = "pebble"; $0.domains = ["\(name).example.test"] }] })
                }
                for node in nodes { #expect(try await Self.servesVerified(node, "\(name).example.test", probe: probe), "\(node.name)") }
            }
            // A node that says it is alive and never confirms (it died a moment ago).
            _ = try await cluster.psql("INSERT INTO certgate_nodes (node, instance, seen_at) VALUES ('ghost', 'gone', extract(epoch from now()))")
            let before = ContinuousClock.now
            try await order("second")
            #expect(ContinuousClock.now - before >= .seconds(3))
            #expect(notices().count == 1, "\(notices())")
            #expect(notices().first?.contains("expected=3 ") == true, "\(notices())")
            // Last seen 20 s ago: not alive, not waited for.
            _ = try await cluster.psql("UPDATE certgate_nodes SET seen_at = extract(epoch from now()) - 20 WHERE node = 'ghost'")
            try await order("third")
            #expect(notices().count == 1, "\(notices())")
        }
    }

    @Test("the node ordering a name dies mid-order (kill -9 while its dns_hook hangs): its order lock goes with its connection, another node orders the name, and every node left serves the certificate")
    func orderLockReleasedWhenTheNodeDies() async throws {
        // The first present hangs (the node ordering is to die in it); the others answer.
        let prelude = """
            if [ "$1" = present ] && mkdir "$HOOKS/first" 2>/dev/null; then
              echo "$PWD hang" >> "$HOOKS/ran"; echo $$ > "$HOOKS/hanging.pid"; exec sleep 120
            fi
            """
        try await Self.withDNSFleet(prelude: prelude) { nodes, root, hooks, lines in
            defer {
                // The hook the dead node left behind.
                let pidFile = hooks.url.appendingPathComponent("hanging.pid").path
                if let pid = (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) { kill(pid, SIGKILL) }
            }
            #expect(try await eventually(timeout: .seconds(60)) { lines().first?.hasSuffix(" hang") == true }, "\(nodes.map(\.gateway.logText))")
            let hangingFolder = try #require(lines().first?.dropLast(" hang".count))
            let dying = try #require(nodes.first { $0.folder.url.resolvingSymlinksInPath().path == hangingFolder })
            // The others see the lock held meanwhile.
            let others = nodes.filter { $0.name != dying.name }
            #expect(try await eventually(timeout: .seconds(30)) {
                others.allSatisfy { $0.gateway.logText.contains("another node of the fleet is ordering this name") }
            })
            dying.gateway.kill9()
            let taker = try await Self.theOneThatOrdered(among: others, root: root)
            let takerFolder = taker.folder.url.resolvingSymlinksInPath().path
            #expect(try await eventually { lines().count == 3 })
            #expect(lines() == ["\(hangingFolder) hang", "\(takerFolder) present", "\(takerFolder) cleanup"])
        }
    }

    @Test("on demand in a fleet, the bounds are each node's own: with per_client_per_hour 1 a client's second new name is refused by the node that ordered its first, while another node orders one for it")
    func onDemandBoundsPerNode() async throws {
        let certificates = """
              customers: { acme: pebble, on_demand: true, domains: "*.customers.test" }
            on_demand: { per_client_per_hour: 1, handshake_wait: 30s }
            """
        try await Self.withPebbleFleet(certificates: certificates) { _, pebble, root, nodes in
            let probe = TLSProbe(group: GatewayInteropTests.group, trustRoots: [root])
            func leaf(_ node: Node, _ name: String) async -> [UInt8]? {
                guard let connection = try? await probe.connect(port: node.port, serverName: name) else { return nil }
                await connection.close()
                return connection.servedLeaf
            }
            func issued() -> Int { pebble.logText.components(separatedBy: "Issued certificate serial").count - 1 }
            // This test's client (127.0.0.1) has one order an hour at each node.
            #expect(await leaf(nodes[0], "a.customers.test") != nil)
            #expect(await leaf(nodes[0], "b.customers.test") == nil)  // no default: the handshake fails
            #expect(issued() == 1)
            #expect(await leaf(nodes[1], "c.customers.test") != nil)
            #expect(await leaf(nodes[1], "d.customers.test") == nil)
            #expect(issued() == 2)
            for (node, refused) in [(nodes[0], "b.customers.test"), (nodes[1], "d.customers.test")] {
                #expect(node.gateway.logText.contains("name=\(refused) reason="), "\(node.gateway.logText)")
                let line = node.gateway.logText.split(separator: "\n").first { $0.contains("name=\(refused) ") } ?? ""
                #expect(line.contains("refusal=client_rate_limited"), "\(line)")
            }
            // What one node obtained, the others serve from the fleet's state without an order.
            let fromFirst = await leaf(nodes[0], "a.customers.test")
            #expect(fromFirst != nil)
            #expect(await leaf(nodes[2], "a.customers.test") == fromFirst)
            #expect(issued() == 2)
            #expect(!nodes[2].gateway.logText.contains("ordering a certificate on demand"))
        }
    }

    @Test("handshakes with host name verification against all three nodes while 1,000 updates go through their sockets: none fails, and each gets a leaf of its own name (an older or a newer version), never another name's")
    func handshakesDuringUpdates() async throws {
        try await Self.withFleet { cluster, nodes in
            let names = (0..<4).map { "live\($0).test" }
            let versions = names.map { name in (0..<3).map { _ in GatewayInteropTests.authority.leaf(dnsNames: [name]) } }
            let known = Set(versions.flatMap { $0.map(\.parsed.der) })
            // Every name exists before the handshakes start.
            _ = try await ControlInteropTests.withControl(socket: nodes[0].socket) { control in
                try await control.updateCertificates(.with { $0.upsert = names.indices.map { ControlInteropTests.entry("live\($0)", versions[$0][0]) } })
            }
            for node in nodes {
                #expect(try await eventually { await Self.servedLeaf(node, "live3.test") != nil })
            }
            let done = Collected<Bool>()
            let results = Collected<String>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for node in nodes {
                    group.addTask {
                        var round = 0
                        while done.all.isEmpty {
                            let name = names[round % names.count]
                            round += 1
                            guard let leaf = await Self.servedLeaf(node, name) else {
                                results.append("\(node.name) \(name): handshake failed")
                                continue
                            }
                            let versionsOfName = Set(versions[names.firstIndex(of: name)!].map(\.parsed.der))
                            results.append(versionsOfName.contains(leaf) ? "ok" : "\(node.name) \(name): \(known.contains(leaf) ? "another name's leaf" : "an unknown leaf")")
                        }
                    }
                }
                group.addTask {
                    defer { done.append(true) }
                    // One client per node's socket, the updates taking turns.
                    try await ControlInteropTests.withControl(socket: nodes[0].socket) { first in
                        try await ControlInteropTests.withControl(socket: nodes[1].socket) { second in
                            try await ControlInteropTests.withControl(socket: nodes[2].socket) { third in
                                let controls = [first, second, third]
                                for update in 0..<1_000 {
                                    let index = update % names.count
                                    _ = try await controls[update % 3].updateCertificates(.with {
                                        $0.upsert = [ControlInteropTests.entry("live\(index)", versions[index][update % 3])]
                                    })
                                }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let all = results.all
            #expect(all.count > 100, "only \(all.count) handshakes")
            #expect(all.filter { $0 != "ok" }.isEmpty, "\(all.filter { $0 != "ok" }.prefix(10))")
            #expect(try await Self.fleetGeneration(cluster) == 1_001)
        }
    }

    @Test("a second process started with a running node's name is reported as an error by one of the two (node names must be unique); both keep serving")
    func namesakeIsReported() async throws {
        try await Self.withFleet { cluster, nodes in
            let namesake = try await Self.startNode("node-1", cluster: cluster)
            defer {
                namesake.gateway.stop()
                namesake.folder.remove()
            }
            let line = "another certgate process uses this node name in the fleet; node names must be unique (shared_state.node)"
            // Heartbeats every 5 s: the first process sees the second's within two of them.
            let reported = try await eventually(timeout: .seconds(15)) {
                nodes[0].gateway.logText.contains(line) || namesake.gateway.logText.contains(line)
            }
            #expect(reported, "\(nodes[0].gateway.logText)")
            #expect(nodes[1...].allSatisfy { !$0.gateway.logText.contains(line) })
            #expect(await Self.servedLeaf(nodes[0], "exact.test") != nil)
        }
    }
}
