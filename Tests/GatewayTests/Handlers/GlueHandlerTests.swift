@testable import Gateway
import NIOCore
import NIOEmbedded
import Testing

/// `GlueHandler`: two `EmbeddedChannel`s on one loop, each [HeadRecorder, GlueHandler, TailRecorder],
/// the glues a matched pair. `HeadRecorder` sees what each glue asks of its own channel (writes,
/// flushes, reads, closes with their mode).
@Suite("GlueHandler", .timeLimit(.minutes(2)))
struct GlueHandlerTests {
    final class Side {
        let channel: EmbeddedChannel
        let head = HeadRecorder()
        let glue: GlueHandler
        let tail = TailRecorder()

        init(loop: EmbeddedEventLoop, glue: GlueHandler, port: Int) throws {
            channel = EmbeddedChannel(loop: loop)
            self.glue = glue
            try channel.pipeline.syncOperations.addHandlers([head, glue, tail])
            try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: port)).wait()
        }

        func read(_ text: String) {
            channel.pipeline.syncOperations.fireChannelRead(NIOAny(ByteBuffer(string: text)))
        }

        func readComplete() {
            channel.pipeline.syncOperations.fireChannelReadComplete()
        }

        /// Each buffer that reached the socket (was flushed), in order.
        func flushed() throws -> [String] {
            var result: [String] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { result.append(String(buffer: buffer)) }
            return result
        }
    }

    /// client ⟷ upstream
    static func pair() throws -> (client: Side, upstream: Side) {
        let loop = EmbeddedEventLoop()
        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair()
        return (try Side(loop: loop, glue: clientGlue, port: 443), try Side(loop: loop, glue: upstreamGlue, port: 8_443))
    }

    struct Boom: Error {}

    @Test("what one side reads is written to the partner, and flushed when the reading side's read completes")
    func bytesCross() throws {
        let (client, upstream) = try Self.pair()
        client.read("GET / ")
        client.read("HTTP/1.1\r\n")
        #expect(try upstream.flushed() == [])  // written, not yet flushed
        client.readComplete()
        #expect(try upstream.flushed() == ["GET / ", "HTTP/1.1\r\n"])
        #expect(try client.channel.readInbound(as: ByteBuffer.self) == nil)  // consumed by the glue, not passed on
        #expect(try client.flushed() == [])
    }

    @Test("the other direction likewise: the upstream's bytes reach the client")
    func bytesCrossBack() throws {
        let (client, upstream) = try Self.pair()
        try upstream.channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\n"))  // read + readComplete
        #expect(try client.flushed() == ["HTTP/1.1 200 OK\r\n"])
        #expect(try upstream.flushed() == [])
    }

    @Test("half-close: the client's inputClosed closes the upstream's output only (close(mode: .output)); the event goes on down the client's pipeline")
    func halfCloseCrosses() throws {
        let (client, upstream) = try Self.pair()
        client.channel.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(upstream.head.closes == [.output])
        #expect(client.head.closes == [])
        #expect(client.tail.seen == [.inputClosed])
        #expect(upstream.tail.seen == [])
        #expect(client.channel.isActive)
        #expect(upstream.channel.isActive)

        // The upstream may still answer: its bytes still reach the client.
        try upstream.channel.writeInbound(ByteBuffer(string: "late answer"))
        #expect(try client.flushed() == ["late answer"])
    }

    @Test("half-close both ways: each side's inputClosed closes the other's output, nothing more")
    func halfCloseBothWays() throws {
        let (client, upstream) = try Self.pair()
        upstream.channel.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(client.head.closes == [.output])
        #expect(upstream.head.closes == [])
        client.channel.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(upstream.head.closes == [.output])
        #expect(client.head.closes == [.output])
    }

    @Test("full close: one side going inactive closes the partner completely")
    func fullCloseCrosses() throws {
        let (client, upstream) = try Self.pair()
        try client.channel.close().wait()
        #expect(upstream.head.closes == [.all])
        #expect(!upstream.channel.isActive)
        #expect(upstream.tail.seen == [.inactive])
        #expect(client.tail.seen == [.inactive])
        #expect(client.head.closes.first == .all)
    }

    @Test("an error closes the side it happened on (not passed on), and so the partner")
    func errorCloses() throws {
        let (client, upstream) = try Self.pair()
        upstream.channel.pipeline.syncOperations.fireErrorCaught(Boom())
        #expect(upstream.head.closes.first == .all)
        #expect(!upstream.channel.isActive)
        #expect(client.head.closes == [.all])
        #expect(!client.channel.isActive)
        #expect(throws: Never.self) { try upstream.channel.throwIfErrorCaught() }
    }

    @Test("read passes straight through while the partner is writable")
    func readWhileWritable() throws {
        let (client, _) = try Self.pair()
        let before = client.head.reads
        client.channel.read()
        #expect(client.head.reads == before + 1)
    }

    @Test("backpressure: a read is held while the partner is not writable, and issued once when it becomes writable")
    func readHeldUntilWritable() throws {
        let (client, upstream) = try Self.pair()
        let before = client.head.reads
        upstream.channel.isWritable = false
        client.channel.read()
        client.channel.read()
        #expect(client.head.reads == before)

        // Still not writable: a writability change alone releases nothing.
        upstream.channel.pipeline.syncOperations.fireChannelWritabilityChanged()
        #expect(client.head.reads == before)

        upstream.channel.isWritable = true
        upstream.channel.pipeline.syncOperations.fireChannelWritabilityChanged()
        #expect(client.head.reads == before + 1)

        // Nothing pending any more: another change issues no read.
        upstream.channel.pipeline.syncOperations.fireChannelWritabilityChanged()
        #expect(client.head.reads == before + 1)
    }

    @Test("backpressure works the other way too: the upstream's read waits for the client to be writable")
    func readHeldOtherWay() throws {
        let (client, upstream) = try Self.pair()
        let before = upstream.head.reads
        client.channel.isWritable = false
        upstream.channel.read()
        #expect(upstream.head.reads == before)
        client.channel.isWritable = true
        client.channel.pipeline.syncOperations.fireChannelWritabilityChanged()
        #expect(upstream.head.reads == before + 1)
    }
}
