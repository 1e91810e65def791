import BenchmarkSupport
import CertificateKit
import CertificateKitNIO
import Crypto
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import X509

// certgate-bench: lookup latency and set (re)build cost. Run in release:
//   swift run -c release certgate-bench [--quick]
// Prints a Markdown table for README. Extra modes:
//   --issuing-only     only the on-the-fly signing figures
//   --breakdown        the cost of each part of one lookup at 100,000 entries
//   --profile-lookup   a long lookup loop to run under `perf record` (add --wildcard or --normalize-only)
//   --profile-rebuild  repeated full rebuilds of 100,000 entries, for `perf record`

let quick = CommandLine.arguments.contains("--quick")
let clock = ContinuousClock()

/// Keeps results alive so the optimiser cannot drop the work.
final class Sink: @unchecked Sendable { var value = 0 }
let sink = Sink()

// One CA and one leaf key/cert reused across entries that differ by `domains`,
// so a 100,000-entry set is quick to make while every entry is parsed and validated.
let certificates = try BenchCertificates()
let caKey = certificates.caKey
let caCert = certificates.caCert

func makeLeaf(names: [String]) throws -> (cert: String, key: String) {
    try certificates.leaf(names: names)
}

let shared = try makeLeaf(names: ["bench.example.com"])

@MainActor func confs(count: Int) -> [String: CertificateConf] {
    var result: [String: CertificateConf] = [:]
    result.reserveCapacity(count + 1)
    for index in 0..<count {
        let domain = index % 10 == 0 ? "*.w\(index).example.com" : "site\(index).example.com"
        result["e\(index)"] = CertificateConf(domains: DomainList([domain]), tlsCert: shared.cert, tlsKey: shared.key)
    }
    result["fallback"] = CertificateConf(domains: ["fallback.example.org"], tlsCert: shared.cert, tlsKey: shared.key, isDefault: true)
    return result
}

struct LookupFigures {
    var exact: Double
    var wildcard: Double
    var defaultHit: Double
    var folded: Double
}

@MainActor func measureLookups(store: CertificateKit.CertificateStore, count: Int) -> LookupFigures {
    let reader = store.makeReader()
    let picks = (0..<1024).map { _ in Int.random(in: 0..<count) }
    func names(_ make: (Int) -> String) -> [String] {
        var result: [String] = []
        for index in picks { result.append(make(index)) }
        return result
    }
    let exactNames = names { index in "site\(index % 10 == 0 ? index + 1 : index).example.com" }
    let wildcardNames = names { index in "www.w\(index - index % 10).example.com" }
    let defaultNames = names { index in "nobody\(index).example.net" }
    let foldedNames = exactNames.map { $0.uppercased() + "." }

    func run(_ names: [String]) -> Double {
        var samples: [Double] = []
        for _ in 0..<(quick ? 50 : 300) {
            let start = clock.now
            var hits = 0
            for name in names {
                if let match = reader.lookup(serverName: name, localAddress: nil) {
                    hits &+= match.entry.name.utf8.count
                }
            }
            samples.append(nanoseconds(clock.now - start) / Double(names.count))
            sink.value &+= hits
        }
        return median(samples)
    }
    return LookupFigures(exact: run(exactNames), wildcard: run(wildcardNames), defaultHit: run(defaultNames), folded: run(foldedNames))
}

var rows: [String] = []
@MainActor func row(_ cells: String...) { rows.append("| " + cells.joined(separator: " | ") + " |") }

let issuingOnly = CommandLine.arguments.contains("--issuing-only")
print("building sets…")
for count in issuingOnly ? [] : quick ? [10, 10_000] : [10, 10_000, 100_000] {
    let set = try CertificateSet.build(from: confs(count: count), context: CertificateBuildContext()).set
    let store = CertificateKit.CertificateStore(initial: set)
    let figures = measureLookups(store: store, count: count)
    row("lookup, \(count) entries", String(format: "exact %.0f ns · wildcard %.0f ns · default %.0f ns · upper-case+dot %.0f ns",
                                          figures.exact, figures.wildcard, figures.defaultHit, figures.folded))
}

// Building a 10,000-entry set of distinct certificates from PEM (parse, key match, chain,
// NIOSSL objects), the way a first load or a full apply does.
if !issuingOnly {
    let count = quick ? 1_000 : 10_000
    var distinct: [String: CertificateConf] = [:]
    for index in 0..<count {
        let leaf = try makeLeaf(names: ["d\(index).example.com"])
        distinct["d\(index)"] = CertificateConf(tlsCert: leaf.cert, tlsKey: leaf.key)
    }
    var samples: [Double] = []
    for _ in 0..<3 {
        let start = clock.now
        let set = try CertificateSet.build(from: distinct, context: CertificateBuildContext(servingMaterialFactory: NIOServingMaterial.factory)).set
        samples.append(nanoseconds(clock.now - start) / 1e6)
        sink.value &+= set.count
    }
    row("build \(count) distinct entries from PEM (with NIOSSL objects)", String(format: "%.0f ms (%.1f µs per entry)", median(samples), median(samples) * 1000 / Double(count)))
}

// Changing 1 entry of 100,000.
if !issuingOnly {
    let count = quick ? 10_000 : 100_000
    let base = confs(count: count)
    let context = CertificateBuildContext(servingMaterialFactory: NIOServingMaterial.factory)
    let set = try CertificateSet.build(from: base, context: context).set
    var upsertSamples: [Double] = []
    var rebuildSamples: [Double] = []
    for round in 0..<(quick ? 5 : 11) {
        let changed = try makeLeaf(names: ["site7.example.com"])
        let conf = CertificateConf(domains: ["site7.example.com", "round\(round).example.com"], tlsCert: changed.cert, tlsKey: changed.key)

        var start = clock.now
        let upserted = try set.updating(upserting: ["e7": conf], deleting: [String](), context: context)
        upsertSamples.append(nanoseconds(clock.now - start) / 1e6)
        precondition(upserted.changed == ["e7"])

        var full = base
        full["e7"] = conf
        start = clock.now
        let rebuilt = try CertificateSet.build(from: full, context: context, reusing: set)
        rebuildSamples.append(nanoseconds(clock.now - start) / 1e6)
        precondition(rebuilt.changed == ["e7"] && rebuilt.added.isEmpty && rebuilt.removed.isEmpty)
        sink.value &+= upserted.set.count + rebuilt.set.count
    }
    row("upsert 1 entry into \(count)", String(format: "%.2f ms", median(upsertSamples)))
    row("full rebuild of \(count) with 1 changed (others reused)", String(format: "%.1f ms", median(rebuildSamples)))
}

// On-the-fly signing: cost per leaf, event-loop stall during a burst of new names, memory.
if !CommandLine.arguments.contains("--skip-issuing") {
    let caEntry = try CertificateSet.build(from: [
        "ca": CertificateConf(domains: ["*.burst.test"], tlsCert: try caCert.serializeAsPEM().pemString, tlsKey: caKey.pemRepresentation, isCA: true),
    ], context: CertificateBuildContext()).set.entries["ca"]!
    let authority = LocalAuthority(entry: caEntry)
    var samples: [Double] = []
    for index in 0..<(quick ? 200 : 2_000) {
        let start = clock.now
        let leaf = try authority.sign(.name(ServerName.normalize("s\(index).burst.test")!), now: Date())
        samples.append(nanoseconds(clock.now - start) / 1e3)
        sink.value &+= leaf.chain.count
    }
    var nioSamples: [Double] = []
    for index in 0..<(quick ? 200 : 2_000) {
        let leaf = try authority.sign(.name(ServerName.normalize("m\(index).burst.test")!), now: Date())
        let start = clock.now
        let material = try NIOServingMaterial.eager(chain: leaf.chain, key: leaf.key)
        nioSamples.append(nanoseconds(clock.now - start) / 1e3)
        sink.value &+= try material.certificateChain().count
    }
    row("sign one P-256 leaf (swift-certificates)", String(format: "%.0f µs; + NIOSSL objects %.0f µs", median(samples), median(nioSamples)))

    // A burst of new names requested from an event loop, as handshakes do; a 1 ms timer on
    // the same loop measures how late it fires (the loop's stall).
    let burst = quick ? 2_000 : 10_000
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let loop = group.next()
    var policy = IssuedCertificateCache.Policy()
    policy.signingsPerSecond = 1_000_000
    policy.burst = 1_000_000
    policy.maxQueuedSignings = burst
    let cache = IssuedCertificateCache(policy: policy, servingMaterialFactory: NIOServingMaterial.factory)
    let done = loop.makePromise(of: Void.self)
    final class Counter: @unchecked Sendable { var value = 0 }
    let completed = Counter()
    let lag = Counter()
    let expected = Counter()
    expected.value = Int((NIODeadline.now() + .milliseconds(1)).uptimeNanoseconds)
    let timer = loop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) { _ in
        let now = Int(NIODeadline.now().uptimeNanoseconds)
        lag.value = max(lag.value, now - expected.value)
        expected.value = now + 1_000_000
    }
    let started = clock.now
    // Each request is its own event-loop task, as each ClientHello is; they arrive 100 per
    // millisecond (100,000 new names a second, far above what 2 cores can handshake).
    for index in 0..<burst {
        if index % 100 == 0 { Thread.sleep(forTimeInterval: 0.001) }
        loop.execute {
            let lookup = cache.leaf(from: authority, for: .name(ServerName.normalize("b\(index).burst.test")!), now: Date()) { _ in
                loop.execute {
                    completed.value += 1
                    if completed.value == burst { done.succeed() }
                }
            }
            if case .refused = lookup { fatalError("refused during the burst") }
        }
    }
    try done.futureResult.wait()
    let burstSeconds = nanoseconds(clock.now - started) / 1e9
    timer.cancel()
    try group.syncShutdownGracefully()
    row("burst of \(burst) new names from an event loop", String(format: "%.2f s (%.0f leaves/s); largest loop stall %.1f ms", burstSeconds, Double(burst) / burstSeconds, Double(lag.value) / 1e6))

    // Resident memory of the cached leaves (with their NIOSSL objects).
    func residentKB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    // Freed memory handed back first (the gateway does so after start and each reload), so
    // the figure is what the leaves hold, not what signing them left free on the heap.
    func trimmedResidentKB() -> Int {
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") {
            _ = unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)(0)
        }
        return residentKB()
    }
    // As the gateway caches them: the CA's NIOSSL certificate shared; each leaf's objects
    // kept while it is among the most recently served (the default), or for every leaf.
    func cachedLeavesKB(keepingObjectsFor recent: Int) -> (count: Int, kilobytes: Int) {
        let before = trimmedResidentKB()
        let memoryCache = IssuedCertificateCache(
            policy: policy, servingMaterialFactory: NIOServingMaterial.issuedLeafFactory(keepingObjectsFor: recent))
        let fill = DispatchGroup()
        for index in 0..<burst {
            fill.enter()
            let lookup = memoryCache.leaf(from: authority, for: .name(ServerName.normalize("r\(recent)x\(index).burst.test")!), now: Date()) { _ in fill.leave() }
            if case .refused = lookup { fatalError("refused while filling the cache") }
        }
        fill.wait()
        let kilobytes = trimmedResidentKB() - before
        return withExtendedLifetime(memoryCache) { (memoryCache.count, kilobytes) }
    }
    for recent in [1, NIOServingMaterial.recentlyServedLeaves, burst] {
        let (count, kilobytes) = cachedLeavesKB(keepingObjectsFor: recent)
        row("memory of \(count) cached leaves, NIOSSL objects kept for \(min(recent, count))", String(format: "%.1f MB (%.1f KB per leaf)", Double(kilobytes) / 1024, Double(kilobytes) / Double(max(1, count))))
    }

    // A leaf whose objects were let go: what its next handshake pays to make them again.
    let remakeCache = IssuedCertificateCache(policy: policy, servingMaterialFactory: NIOServingMaterial.issuedLeafFactory(keepingObjectsFor: 1))
    let remade = Mutex<[NIOServingMaterial]>([])
    for index in 0..<(quick ? 200 : 2_000) {
        let waited = DispatchSemaphore(value: 0)
        _ = remakeCache.leaf(from: authority, for: .name(ServerName.normalize("o\(index).burst.test")!), now: Date()) { result in
            if case .success(let cached) = result, let material = cached.servingMaterial as? NIOServingMaterial {
                remade.withLock { $0.append(material) }
            }
            waited.signal()
        }
        waited.wait()
    }
    var remakeSamples: [Double] = []
    for material in remade.withLock({ $0 }).dropLast() {
        precondition(!material.isBuilt)
        let start = clock.now
        sink.value &+= try material.certificateChain().count
        remakeSamples.append(nanoseconds(clock.now - start) / 1e3)
    }
    row("NIOSSL objects of a leaf made again at its next handshake", String(format: "%.1f µs", median(remakeSamples)))
}

print("")
print("| measurement | median |")
print("|---|---|")
rows.forEach { print($0) }
print("")
print("(sink \(sink.value % 10))")

// Breakdown of one lookup's parts at 100,000 entries (--breakdown).
if CommandLine.arguments.contains("--breakdown") {
    let count = 100_000
    let set = try CertificateSet.build(from: confs(count: count), context: CertificateBuildContext()).set
    let store = CertificateKit.CertificateStore(initial: set)
    let names = (0..<1024).map { _ in "site\(Int.random(in: 0..<count / 10) * 10 + 1).example.com" }
    func time(_ label: String, _ body: (String) -> Int) {
        var samples: [Double] = []
        for _ in 0..<300 {
            let start = clock.now
            var total = 0
            for name in names { total &+= body(name) }
            samples.append(nanoseconds(clock.now - start) / Double(names.count))
            sink.value &+= total
        }
        print(String(format: "%@: %.1f ns", label, median(samples)))
    }
    time("baseline (closure call, utf8.count)") { $0.utf8.count }
    time("store.current") { _ in Int(store.current.generation) }
    time("ServerName.normalize") { ServerName.normalize($0)?.text.utf8.count ?? 0 }
    let plain = Dictionary(uniqueKeysWithValues: set.entries.map { ($0.key, $0.value) })
    time("Dictionary<String,_> lookup of entry name") { plain[$0] == nil ? 0 : 1 }
    time("set.lookup") { set.lookup(serverName: $0, localAddress: nil) == nil ? 0 : 1 }
    time("store.current.set.lookup") { store.current.set.lookup(serverName: $0, localAddress: nil) == nil ? 0 : 1 }
    let reader = store.makeReader()
    time("reader.current") { _ in Int(reader.current.generation) }
    time("reader.lookup") { reader.lookup(serverName: $0, localAddress: nil) == nil ? 0 : 1 }
}

// A long lookup loop to profile (--profile-lookup), e.g. under `perf record`.
if CommandLine.arguments.contains("--profile-lookup") {
    let set = try CertificateSet.build(from: confs(count: 10_000), context: CertificateBuildContext()).set
    let store = CertificateKit.CertificateStore(initial: set)
    let names = (0..<1024).map { _ in CommandLine.arguments.contains("--wildcard") ? "www.w\(Int.random(in: 0..<1_000) * 10).example.com" : "site\(Int.random(in: 0..<1_000) * 10 + 1).example.com" }
    var hits = 0
    let normalizeOnly = CommandLine.arguments.contains("--normalize-only")
    for _ in 0..<20_000 {
        if normalizeOnly {
            for name in names where ServerName.normalize(name) != nil { hits &+= 1 }
        } else {
            for name in names where store.current.set.lookup(serverName: name, localAddress: nil) != nil { hits &+= 1 }
        }
    }
    print("hits \(hits)")
}

// Repeated full rebuilds of 100,000 entries with one changed, to profile (--profile-rebuild).
if CommandLine.arguments.contains("--profile-rebuild") {
    let base = confs(count: 100_000)
    let set = try CertificateSet.build(from: base, context: CertificateBuildContext()).set
    var full = base
    full["e7"] = CertificateConf(domains: ["site7.example.com", "x.example.com"], tlsCert: shared.cert, tlsKey: shared.key)
    for _ in 0..<30 {
        sink.value &+= try CertificateSet.build(from: full, context: CertificateBuildContext(), reusing: set).set.count
    }
}
