import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// The pipeline of every new client connection:
/// facts publisher → TLS (the certificate callback of ``CertificateSelector``) →
/// handshake timeout → ``ConnectionRouter`` (which, once the handshake is done, hands the
/// plaintext to the responder or to an upstream).
final class ConnectionPipeline: Sendable {
    /// The route table new connections follow (replaced by a reload).
    let routes: Mutex<RouteTable>
    let selector: CertificateSelector
    /// Per event loop: the deadlines of the handshakes in progress.
    let deadlines: [ObjectIdentifier: HandshakeDeadlines]
    let upstreamLog: UpstreamFailureLog
    let tracker: ConnectionTracker
    /// ACME challenge answers (tls-alpn-01 certificates, http-01 key authorizations).
    let challenges: ChallengeResponses
    /// Where `protocol: http` listeners redirect to.
    let httpsPort: Int
    let logger: Logger

    init(
        routes: RouteTable, selector: CertificateSelector, deadlines: [ObjectIdentifier: HandshakeDeadlines],
        upstreamLog: UpstreamFailureLog, tracker: ConnectionTracker, challenges: ChallengeResponses, httpsPort: Int, logger: Logger
    ) {
        self.challenges = challenges
        self.httpsPort = httpsPort
        self.routes = Mutex(routes)
        self.selector = selector
        self.deadlines = deadlines
        self.upstreamLog = upstreamLog
        self.tracker = tracker
        self.logger = logger
    }

    func install(on channel: any Channel, runtime: ListenerRuntime) throws {
        tracker.register(channel)
        let (listener, tlsContext) = runtime.current
        let operations = channel.pipeline.syncOperations
        guard let context = tlsContext else {
            // protocol: http — ACME http-01 answers and redirects to https.
            try operations.configureHTTPServerPipeline(withErrorHandling: true)
            try operations.addHandler(HTTPChallengeResponder(responses: challenges, httpsPort: httpsPort))
            return
        }
        let facts = HandshakeFacts(listener: runtime.name, localAddress: channel.localAddress, remoteAddress: channel.remoteAddress)
        let publisher = HandshakeFactsPublisher(facts: facts, slot: selector.currentFacts)
        let logger = self.logger
        try operations.addHandler(publisher)
        if challenges.hasTLSALPN01 {
            // A tls-alpn-01 validation may be this connection: read the ClientHello first.
            try operations.addHandler(ClientHelloSniffer(listenerContext: context, challenges: challenges, facts: facts))
        } else {
            try operations.addHandler(NIOSSLServerHandler(context: context))
        }
        guard let deadlines = deadlines[ObjectIdentifier(channel.eventLoop)] else {
            preconditionFailure("a connection on an event loop outside the gateway's group")
        }
        try operations.addHandler(HandshakeTimeoutHandler(timeout: TimeAmount(listener.handshakeTimeout.duration), deadlines: deadlines) { _ in
            logger.info("TLS handshake timed out; closing", metadata: [
                "listener": "\(facts.listener)", "client": "\(facts.remoteAddress.map { "\($0)" } ?? "-")",
                "timeout": "\(listener.handshakeTimeout)",
            ])
        })
        try operations.addHandler(ConnectionRouter(
            facts: facts, publisher: publisher, routes: routes.withLock { $0 },
            upstreamLog: upstreamLog, logger: logger))
    }
}
