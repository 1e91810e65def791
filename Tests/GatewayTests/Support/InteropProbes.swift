import Crypto
import Foundation
import GRDB
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import SwiftASN1
import Synchronization
import X509
#if canImport(Glibc)
import Glibc
#endif

// Helpers of the handshake, issuing, upstream and validity-monitor interop tests.

// MARK: - Logs and metrics

/// The log's lines without their timestamps, as swift-log's stream handler writes them:
/// `level label: key=value … [module] message` (metadata sorted by key).
func untimedLogLines(_ log: String) -> [String] {
    log.split(separator: "\n").map { line in
        guard let space = line.firstIndex(of: " ") else { return String(line) }
        return String(line[line.index(after: space)...])
    }
}

extension GatewayProcess {
    /// How many log lines are exactly `line` (timestamps aside).
    func count(ofLine line: String) -> Int {
        untimedLogLines(logText).filter { $0 == line }.count
    }

    /// Waits until the log holds the exact line `line` (timestamps aside) `occurrences` times.
    func waitForLine(_ line: String, occurrences: Int = 1, timeout: Duration = .seconds(10)) async throws -> Bool {
        try await eventually(timeout: timeout) { count(ofLine: line) >= occurrences || !process.isRunning }
            && count(ofLine: line) >= occurrences
    }

    /// Rewrites the configuration (its `PORT` replaced by the port it serves on) and sends SIGHUP.
    func reload(with config: String, configPath: String = "certgate.yaml") throws {
        try folder.write(config.replacingOccurrences(of: "PORT", with: String(port)), to: configPath)
        signal(SIGHUP)
    }
}

/// The RFC 3339 form a validity notification gives a date (`JSONEncoder`'s `.iso8601`).
func notificationTime(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: date)
}

/// The notAfter of a certificate as a client reads it (whole seconds, from its DER).
func servedNotAfter(_ certificate: Certificate) throws -> Date {
    var serializer = DER.Serializer()
    try serializer.serialize(certificate)
    return try Certificate(derEncoded: serializer.serializedBytes).notValidAfter
}

// MARK: - A TLS client that tells everything

/// One TLS connection to the gateway with what a test checks: the address it connects to
/// (IPv4 or IPv6), the SNI and ALPN protocols offered, the negotiated protocol and TLS
/// version, the served leaf, and the client's own address — also when the handshake fails.
struct TLSProbe {
    let group: any EventLoopGroup
    /// Roots to verify the server with; empty: no verification.
    var trustRoots: [NIOSSLCertificate] = []
    var applicationProtocols: [String] = []
    /// The highest TLS version offered (nil: NIOSSL's default, TLS 1.3).
    var maximumTLSVersion: TLSVersion?

    /// The handshake failed; `localAddress` is the client's side of the TCP connection.
    struct Failure: Error, CustomStringConvertible {
        let localAddress: SocketAddress?
        let underlying: any Error
        var description: String { "handshake from \(localAddress.map { "\($0)" } ?? "?") failed: \(underlying)" }
    }

    struct Connection {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        let negotiatedProtocol: String?
        let tlsVersion: TLSVersion?
        let servedLeaf: [UInt8]?
        let localAddress: SocketAddress

        var localPort: Int { localAddress.port ?? -1 }

        func close() async {
            try? await channel.executeThenClose { _, _ in }
        }

        /// Sends `bytes` (if any; then half-closes when `halfClose`) and returns everything
        /// received until the server closes (or `timeout`, after which the client closes),
        /// and whether the server closed it.
        func readToEnd(sending bytes: [UInt8] = [], halfClose: Bool = false, timeout: Duration = .seconds(10)) async throws -> (received: [UInt8], closedByServer: Bool) {
            let timedOut = Collected<Bool>()
            let raw = channel.channel
            let guardTask = Task {
                try await Task.sleep(for: timeout)
                timedOut.append(true)
                try? await raw.close()
            }
            var received: [UInt8] = []
            try await channel.executeThenClose { inbound, outbound in
                // The server may have closed already (that is what some tests look for).
                if !bytes.isEmpty { try? await outbound.write(ByteBuffer(bytes: bytes)) }
                if halfClose { outbound.finish() }
                do {
                    for try await var buffer in inbound { received += buffer.readBytes(length: buffer.readableBytes) ?? [] }
                } catch {
                    // An unclean end of the stream still ends it.
                }
            }
            guardTask.cancel()
            return (received, timedOut.all.isEmpty)
        }
    }

    func connect(host: String = "127.0.0.1", port: Int, serverName: String?) async throws -> Connection {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if trustRoots.isEmpty {
            configuration.certificateVerification = .none
        } else {
            configuration.trustRoots = .certificates(trustRoots)
            configuration.certificateVerification = serverName == nil ? .noHostnameVerification : .fullVerification
        }
        configuration.shutdownTimeout = .milliseconds(200)
        configuration.applicationProtocols = applicationProtocols
        configuration.maximumTLSVersion = maximumTLSVersion
        let context = try NIOSSLContext(configuration: configuration)
        let localAddress = Collected<SocketAddress>()
        // No remote half-closure: a close_notify from the server closes this client, which
        // answers it with its own (NIOSSL on the gateway waits for that answer).
        let (channel, handshake) = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let waiter = ProbeHandshakeWaiter(promise: channel.eventLoop.makePromise(), localAddress: localAddress)
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    try channel.pipeline.syncOperations.addHandler(waiter)
                    let wrapped = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                    return (wrapped, waiter.promise.futureResult)
                }
            }
        let completed: ProbeHandshakeWaiter.Completed
        do {
            completed = try await handshake.get()
        } catch {
            try? await channel.executeThenClose { _, _ in }
            throw Failure(localAddress: localAddress.all.first, underlying: error)
        }
        guard let address = localAddress.all.first else { throw GatewayProcessError(message: "a connected channel without a local address") }
        return Connection(
            channel: channel, negotiatedProtocol: completed.negotiatedProtocol, tlsVersion: completed.tlsVersion,
            servedLeaf: completed.servedLeaf, localAddress: address)
    }
}

/// Completes with what the handshake settled when it does (fails with its error). The
/// facts are read at that moment: a server that closes right after its handshake takes the
/// TLS handler out of the pipeline soon after.
private final class ProbeHandshakeWaiter: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    struct Completed: Sendable {
        let negotiatedProtocol: String?
        let tlsVersion: TLSVersion?
        let servedLeaf: [UInt8]?
    }

    let promise: EventLoopPromise<Completed>
    /// The client's address, noted when the connection becomes active (a failed handshake
    /// closes it, and a closed channel may no longer tell).
    let localAddress: Collected<SocketAddress>

    init(promise: EventLoopPromise<Completed>, localAddress: Collected<SocketAddress>) {
        self.promise = promise
        self.localAddress = localAddress
    }

    func channelActive(context: ChannelHandlerContext) {
        if let address = context.channel.localAddress { localAddress.append(address) }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let negotiated) = event {
            let operations = context.pipeline.syncOperations
            promise.succeed(Completed(
                negotiatedProtocol: negotiated,
                tlsVersion: try? operations.nioSSL_tlsVersion(),
                servedLeaf: try? operations.nioSSL_peerCertificate()?.toDERBytes()))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        promise.fail(ChannelError.ioOnClosedChannel)  // a no-op once completed
    }
}

// MARK: - Raw ClientHellos

/// ClientHellos as NIOSSL's client writes them, one per name, sent on plain TCP
/// connections: a flood of handshakes that costs the test next to nothing, and whose
/// answers (the first bytes of a ServerHello, or an alert) tell what the server did.
enum RawClientHello {
    /// The fatal `internal_error` alert record (TLS 1.2 record version): what a handshake
    /// that gets no certificate receives.
    static let internalErrorAlert: [UInt8] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50]

    static func make(serverNames: [String]) throws -> [[UInt8]] {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        let context = try NIOSSLContext(configuration: configuration)
        return try serverNames.map { name in
            let channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: name))
            _ = channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 9))
            var bytes: [UInt8] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += Array(buffer.readableBytesView) }
            _ = try? channel.finish()
            return bytes
        }
    }

    /// Opens a connection per hello, all at once, sends it, and returns (in order) the
    /// first `prefix` bytes each connection received before it closed, or what arrived
    /// before it closed.
    static func firstBytes(of hellos: [[UInt8]], port: Int, group: any EventLoopGroup, prefix: Int = 7) async throws -> [[UInt8]] {
        try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { tasks in
            for (index, hello) in hellos.enumerated() {
                tasks.addTask {
                    let (channel, answer) = try await ClientBootstrap(group: group)
                        .connectTimeout(.seconds(60))
                        .connect(host: "127.0.0.1", port: port) { channel in
                            channel.eventLoop.makeCompletedFuture {
                                let handler = FirstBytes(limit: prefix, promise: channel.eventLoop.makePromise())
                                try channel.pipeline.syncOperations.addHandler(handler)
                                return (channel, handler.promise.futureResult)
                            }
                        }
                    try await channel.writeAndFlush(ByteBuffer(bytes: hello))
                    let bytes = try await answer.get()
                    try? await channel.close()
                    return (index, bytes)
                }
            }
            var answers = [[UInt8]](repeating: [], count: hellos.count)
            for try await (index, bytes) in tasks { answers[index] = bytes }
            return answers
        }
    }

    private final class FirstBytes: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let limit: Int
        let promise: EventLoopPromise<[UInt8]>
        var received: [UInt8] = []

        init(limit: Int, promise: EventLoopPromise<[UInt8]>) {
            self.limit = limit
            self.promise = promise
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += Array(unwrapInboundIn(data).readableBytesView)
            if received.count >= limit { promise.succeed(Array(received.prefix(limit))) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.succeed(received)  // a no-op once completed
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)  // a reset: what arrived is the answer
        }
    }
}

// MARK: - Upstreams

/// An upstream that takes no connection while it is "down": it listens with a backlog of
/// 0 and does not accept, so once one connection waits in its accept queue the kernel
/// drops every further SYN and a connect gets no answer at all (a timeout, not a refusal).
/// This works offline and on loopback, where a non-routable address (10.255.255.1) would
/// fail at once with "network unreachable" on a machine without a default route.
/// ``open()`` starts accepting: from then on it echoes what it reads.
final class BacklogUpstream: Sendable {
    let server: any Channel
    let port: Int
    private let group: any EventLoopGroup
    private let fillers = Mutex<[any Channel]>([])

    init(group: any EventLoopGroup) async throws {
        self.group = group
        server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 0)
            .serverChannelOption(.autoRead, value: false)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(PlainEcho()) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = server.localAddress!.port!
    }

    /// Fills the accept queue, then checks that a further connect goes unanswered for
    /// 300 ms. Returns whether it did (the upstream is a black hole now).
    func fill() async throws -> Bool {
        let filler = try await ClientBootstrap(group: group).connectTimeout(.seconds(5)).connect(host: "127.0.0.1", port: port).get()
        fillers.withLock { $0.append(filler) }
        do {
            let probe = try await ClientBootstrap(group: group).connectTimeout(.milliseconds(300)).connect(host: "127.0.0.1", port: port).get()
            try? await probe.close()
            return false
        } catch ChannelError.connectTimeout {
            return true
        }
    }

    /// Starts accepting (the queued connection first).
    func open() async throws {
        try await server.setOption(.autoRead, value: true).get()
    }

    func close() async {
        for filler in fillers.withLock({ $0 }) { try? await filler.close() }
        try? await server.close()
    }
}

/// Echoes every byte; closes its output when the peer closes its own.
private final class PlainEcho: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { context.close(mode: .output, promise: nil) }
    }
}

/// A webhook receiver that reads each POST and never answers: slower than any timeout.
final class HoldingWebhook: Sendable {
    let channel: any Channel
    let port: Int
    let bodies = Collected<Data>()

    init(group: any EventLoopGroup) async throws {
        let bodies = self.bodies
        channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Holder(bodies: bodies))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    func close() async { try? await channel.close() }

    private final class Holder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        let bodies: Collected<Data>
        var buffer = ByteBuffer()

        init(bodies: Collected<Data>) { self.bodies = bodies }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head: buffer.clear()
            case .body(var part): buffer.writeBuffer(&part)
            case .end: bodies.append(Data(buffer.readableBytesView))  // and no answer, ever
            }
        }
    }
}

// MARK: - Certificates and state

/// P-521 (secp521r1) certificates, which `TestCertificate` does not make.
enum P521Material {
    struct Authority {
        let certificate: Certificate
        let key: P521.Signing.PrivateKey
        var pem: String { try! certificate.serializeAsPEM().pemString }
    }

    static func authority(commonName: String) throws -> Authority {
        let key = P521.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let name = try DistinguishedName { CommonName(commonName) }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: Date().addingTimeInterval(365 * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA512,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        return Authority(certificate: certificate, key: key)
    }

    /// A server leaf for `publicKey` signed by `authority` (ECDSA with SHA-512).
    static func leaf(publicKey: Certificate.PublicKey, dnsName: String, authority: Authority) throws -> Certificate {
        try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: Date().addingTimeInterval(90 * 86_400),
            issuer: authority.certificate.subject, subject: try DistinguishedName { CommonName(dnsName) },
            signatureAlgorithm: .ecdsaWithSHA512,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: authority.certificate.publicKey).keyIdentifier)
                SubjectAlternativeNames([.dnsName(dnsName)])
            },
            issuerPrivateKey: Certificate.PrivateKey(authority.key))
    }
}

/// The names of the issued leaves stored in `state_dir/certgate.db` (read-only, beside
/// the running gateway: the database is in WAL mode).
func storedIssuedLeafNames(stateDirectory: URL) throws -> [String] {
    var configuration = GRDB.Configuration()
    configuration.readonly = true
    let database = try DatabaseQueue(path: stateDirectory.appendingPathComponent("certgate.db").path, configuration: configuration)
    defer { try? database.close() }
    return try database.read { try String.fetchAll($0, sql: "SELECT name FROM issued_leaves ORDER BY name") }
}

/// Whether this machine has an IPv6 loopback address to bind (`::1`).
let ipv6LoopbackAvailable: Bool = {
    let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in6()
    address.sin6_family = sa_family_t(AF_INET6)
    guard inet_pton(AF_INET6, "::1", &address.sin6_addr) == 1 else { return false }
    address.sin6_port = 0
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
    } == 0
}()

/// The common name of the leaf `openssl s_client` verified (nil when the handshake or
/// the verification failed), read from the certificate itself with swift-certificates:
/// OpenSSL's text form of names changed in 3.2 (`CN = x` → `CN=x`).
func servedCommonName(port: Int, serverName: String?, folder: FixtureFolder) async throws -> (cn: String?, output: String) {
    var arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", folder.url.appendingPathComponent("ca.pem").path,
                     "-verify_return_error", "-showcerts"]
    if let serverName { arguments += ["-servername", serverName] } else { arguments += ["-noservername"] }
    let (status, output) = try await runTool("/usr/bin/openssl", arguments, input: Data("Q\n".utf8))
    guard status == 0, let first = try? PEMDocument.parseMultiple(pemString: output).first,
          let leaf = try? Certificate(pemDocument: first) else {
        return (nil, output)
    }
    return (leaf.subject.commonName, output)
}

/// A TCP socket connected (or not) to 127.0.0.1:`port`: the descriptor (the caller closes it)
/// and whether the connection was made (else `errno` says why).
func loopbackConnection(port: Int) -> (descriptor: Int32, connected: Bool) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return (fd, false) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return (fd, result == 0)
}
