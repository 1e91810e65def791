import Logging
import NIOCore
import NIOPosix
import NIOEmbedded
import NIOTLS
import Synchronization

// Helpers shared by the channel-handler tests in this folder.

/// The types of a pipeline's handlers, head to tail (e.g. `["HTTPResponseEncoder", "RespondHandler"]`).
/// Must be called on the pipeline's event loop.
///
/// NIO has no public list of a pipeline's handlers; its `debugDescription` ends each
/// handler's line with `[name]`, and each name leads back to its context.
func handlerTypes(of pipeline: ChannelPipeline) throws -> [String] {
    let lines = pipeline.debugDescription.split(separator: "\n")
    guard lines.count > 2 else { return [] }  // header line, then " <no handlers>" or "[I] ↓↑ [O]"
    return try lines.dropFirst(2).map { line in
        guard let open = line.lastIndex(of: "["), let close = line.lastIndex(of: "]"), open < close else {
            throw PipelineListingError(line: String(line))
        }
        let name = String(line[line.index(after: open)..<close])
        return "\(type(of: try pipeline.syncOperations.context(name: name).handler))"
    }
}

struct PipelineListingError: Error {
    let line: String
}

/// An outbound handler for the head of an `EmbeddedChannel`: records every `close` with its
/// mode and counts `read`s that reach the head. `EmbeddedChannel` closes completely whatever
/// the mode, so an `.output` or `.input` close is recorded and succeeded here, not passed on
/// (the channel stays open, as a socket with only its write side shut would).
final class HeadRecorder: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny

    private(set) var closes: [CloseMode] = []
    private(set) var reads = 0

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        closes.append(mode)
        if mode == .all {
            context.close(mode: mode, promise: promise)
        } else {
            promise?.succeed(())
        }
    }

    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}

/// What reached the end of a pipeline, other than reads (those land in the channel's inbound buffer).
enum SeenEvent: Equatable {
    case handshakeCompleted(negotiatedProtocol: String?)
    case inputClosed
    case inactive
    case other(String)
}

/// An inbound handler for the tail of a pipeline: records user events and `channelInactive`, and
/// passes everything on.
final class TailRecorder: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    private(set) var seen: [SeenEvent] = []

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case TLSUserEvent.handshakeCompleted(let negotiatedProtocol):
            seen.append(.handshakeCompleted(negotiatedProtocol: negotiatedProtocol))
        case ChannelEvent.inputClosed:
            seen.append(.inputClosed)
        default:
            seen.append(.other("\(event)"))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        seen.append(.inactive)
        context.fireChannelInactive()
    }
}

/// A user event no handler under test knows.
struct UnrelatedEvent: Equatable {}

/// Everything read from an `EmbeddedChannel`'s outbound buffer, as one string.
func outboundText(_ channel: EmbeddedChannel) throws -> String {
    var all = ByteBuffer()
    while let part = try channel.readOutbound(as: IOData.self) {
        switch part {
        case .byteBuffer(var buffer): all.writeBuffer(&buffer)
        case .fileRegion: throw UnexpectedFileRegion()
        }
    }
    return String(buffer: all)
}

struct UnexpectedFileRegion: Error {}

// MARK: - Logs

/// One log call, with the metadata rendered as text.
struct LogEntry: Equatable, Sendable {
    let level: Logger.Level
    let message: String
    let metadata: [String: String]
}

/// The log calls made through loggers made by ``makeLogger()``.
final class LogStore: Sendable {
    private let entries = Mutex<[LogEntry]>([])

    func append(_ entry: LogEntry) { entries.withLock { $0.append(entry) } }
    var all: [LogEntry] { entries.withLock { $0 } }
    var messages: [String] { all.map(\.message) }

    /// A logger at `.trace` that records into this store.
    func makeLogger() -> Logger {
        var logger = Logger(label: "test") { _ in CapturingLogHandler(store: self) }
        logger.logLevel = .trace
        return logger
    }
}

struct CapturingLogHandler: LogHandler {
    let store: LogStore
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        store.append(LogEntry(level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
    }
}

// MARK: - Loopback sockets

/// What one TCP connection received, as seen by a ``RecordingHandler``.
final class Recorded: Sendable {
    private struct State {
        var bytes: [UInt8] = []
        var inputClosed = false
        var inactive = false
    }

    private let state = Mutex(State())

    var bytes: [UInt8] { state.withLock { $0.bytes } }
    var text: String { String(decoding: bytes, as: UTF8.self) }
    /// The peer closed its write side (half-close) while this side stayed open.
    var inputClosed: Bool { state.withLock { $0.inputClosed } }
    var inactive: Bool { state.withLock { $0.inactive } }

    fileprivate func append(_ more: [UInt8]) { state.withLock { $0.bytes += more } }
    fileprivate func markInputClosed() { state.withLock { $0.inputClosed = true } }
    fileprivate func markInactive() { state.withLock { $0.inactive = true } }
}

/// Records every byte a connection reads, its half-close and its end.
final class RecordingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let recorded: Recorded

    init(recorded: Recorded) {
        self.recorded = recorded
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        recorded.append(buffer.readBytes(length: buffer.readableBytes) ?? [])
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { recorded.markInputClosed() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        recorded.markInactive()
        context.fireChannelInactive()
    }
}

/// A listener on 127.0.0.1 (port chosen by the system, or `port`) whose accepted connections
/// allow half-close and are set up by `initialize` (on their loop).
final class LoopbackListener: Sendable {
    let channel: any Channel
    let port: Int
    /// Accepted connections, in order.
    let accepted: Collected<any Channel>

    /// - Parameter reserved: listen on this reserved port's own socket (see
    ///   ``refusedPort()``) instead of a new ephemeral port.
    init(group: any EventLoopGroup, reserved: ReservedPort? = nil, initialize: @escaping @Sendable (any Channel) throws -> Void) async throws {
        let accepted = Collected<any Channel>()
        self.accepted = accepted
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    accepted.append(channel)
                    try initialize(channel)
                }
            }
        if let reserved {
            channel = try await bootstrap.withBoundSocket(try reserved.listen()).get()
        } else {
            channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        }
        self.port = channel.localAddress?.port ?? 0
    }

    /// A listener whose connections each record what they receive into `connections`.
    static func recording(group: any EventLoopGroup, reserved: ReservedPort? = nil) async throws -> (LoopbackListener, Collected<Recorded>) {
        let connections = Collected<Recorded>()
        let listener = try await LoopbackListener(group: group, reserved: reserved) { channel in
            let recorded = Recorded()
            connections.append(recorded)
            try channel.pipeline.syncOperations.addHandler(RecordingHandler(recorded: recorded))
        }
        return (listener, connections)
    }

    func close() async { try? await channel.close() }
}

/// A TCP client on 127.0.0.1 that records what it receives. It does not allow half-close: the
/// peer's FIN closes it (`Recorded.inactive`), whether the peer closed fully or only its output.
func connectRecordingClient(group: any EventLoopGroup, port: Int) async throws -> (any Channel, Recorded) {
    let recorded = Recorded()
    let channel = try await ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(RecordingHandler(recorded: recorded))
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    return (channel, recorded)
}

/// A port on 127.0.0.1 that refuses connections: its socket is bound and not listening, so
/// no other test can take it; ``LoopbackListener`` can later listen on that very socket.
func refusedPort() throws -> ReservedPort {
    try ReservedPort()
}

/// Runs `body` with a one-thread event loop group, shut down afterwards.
func withEventLoopGroup(_ body: (MultiThreadedEventLoopGroup) async throws -> Void) async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    do {
        try await body(group)
    } catch {
        try? await group.shutdownGracefully()
        throw error
    }
    try await group.shutdownGracefully()
}
