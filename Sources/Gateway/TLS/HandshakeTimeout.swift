import NIOCore
import NIOTLS

/// Disconnects a client whose handshake has not completed in time (NIOSSL has no
/// handshake timeout of its own: a client that sends nothing would hold the socket
/// forever). The deadline is kept by its loop's ``HandshakeDeadlines``, not by a scheduled
/// task per connection.
final class HandshakeTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let timeout: TimeAmount
    private let deadlines: HandshakeDeadlines
    private let onTimeout: (ChannelHandlerContext) -> Void
    private var context: ChannelHandlerContext?
    private(set) var deadline = NIODeadline.distantFuture
    /// The handshake completed, the connection closed, or the deadline passed.
    private(set) var isFinished = false

    init(timeout: TimeAmount, deadlines: HandshakeDeadlines, onTimeout: @escaping (ChannelHandlerContext) -> Void) {
        self.timeout = timeout
        self.deadlines = deadlines
        self.onTimeout = onTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case TLSUserEvent.handshakeCompleted = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        finish()
        context.fireUserInboundEventTriggered(event)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// Called by the loop's sweep once `deadline` has passed.
    func expire() {
        guard !isFinished, let context else { return }
        finish()
        onTimeout(context)
        context.close(promise: nil)
    }

    private func arm(context: ChannelHandlerContext) {
        guard self.context == nil, !isFinished else { return }
        self.context = context
        deadline = context.eventLoop.now + timeout
        deadlines.add(self)
    }

    private func finish() {
        isFinished = true
        context = nil
    }
}

/// The handshake deadlines of one event loop's connections. One repeated task per loop —
/// running only while some handshake is pending — closes those past their deadline, every
/// `tick`: a handshake costs an append here instead of a scheduled task whose cancellation
/// searches the loop's timer heap. A deadline fires up to one tick late.
///
/// Confined to its event loop: made before the loop runs anything of it, then touched only
/// by that loop's connections and sweep (hence `@unchecked Sendable`).
final class HandshakeDeadlines: @unchecked Sendable {
    static let tick = TimeAmount.milliseconds(100)

    private let eventLoop: any EventLoop
    private var pending: [HandshakeTimeoutHandler] = []
    private var sweeper: RepeatedTask?

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// One per loop of `group`.
    static func perLoop(of group: any EventLoopGroup) -> [ObjectIdentifier: HandshakeDeadlines] {
        var result: [ObjectIdentifier: HandshakeDeadlines] = [:]
        for loop in group.makeIterator() {
            result[ObjectIdentifier(loop)] = HandshakeDeadlines(eventLoop: loop)
        }
        return result
    }

    func add(_ handler: HandshakeTimeoutHandler) {
        eventLoop.assertInEventLoop()
        pending.append(handler)
        guard sweeper == nil else { return }
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: Self.tick, delay: Self.tick) { [self] _ in
            sweep()
        }
    }

    private func sweep() {
        eventLoop.assertInEventLoop()
        let now = eventLoop.now
        var expired: [HandshakeTimeoutHandler] = []
        pending.removeAll { handler in
            if handler.isFinished { return true }
            if handler.deadline <= now {
                expired.append(handler)
                return true
            }
            return false
        }
        for handler in expired { handler.expire() }
        if pending.isEmpty {
            sweeper?.cancel()
            sweeper = nil
        }
    }
}
