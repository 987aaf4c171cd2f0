import Appliance
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Counts open connections, overall and per address, for ``ConnectionLimits``.
final class ConnectionCounter: Sendable {
    let limits: ConnectionLimits
    private let state = Mutex<(total: Int, byAddress: [String: Int])>((0, [:]))

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    /// Counts a new connection from `address`; false (and not counted) when a cap is reached.
    func open(_ address: String) -> Bool {
        state.withLock { state in
            guard state.total < limits.maxConnections, state.byAddress[address, default: 0] < limits.maxConnectionsPerAddress else { return false }
            state.total += 1
            state.byAddress[address, default: 0] += 1
            return true
        }
    }

    func close(_ address: String) {
        state.withLock { state in
            state.total -= 1
            state.byAddress[address, default: 1] -= 1
            if state.byAddress[address] == 0 { state.byAddress[address] = nil }
        }
    }
}

/// A server child channel that puts a ``ConnectionGuard`` right after the HTTP decoder of the channel it
/// wraps (Hummingbird's HTTP/1 with WebSocket upgrade), before the first request is read: Hummingbird's
/// own handlers, idle timeout included, join the pipeline only once the first request's head is in.
struct GuardedChildChannel<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value
    let inner: Inner
    let counter: ConnectionCounter

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try pipeline.addHandler(ConnectionGuard(counter: counter, logger: logger), position: .after(decoder))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// Hummingbird's HTTP/1 server with WebSocket upgrade (`webSocketRouter` decides the upgrades), with
    /// every connection under ``ConnectionLimits``.
    static func guardedWebSocketUpgrade(
        webSocketRouter: Router<SDBoxRequestContext>, configuration: HTTP1WebSocketUpgradeChannel.Configuration, limits: ConnectionLimits
    ) -> HTTPServerBuilder {
        let webSocketResponder = webSocketRouter.buildResponder()
        let counter = ConnectionCounter(limits: limits)
        return HTTPServerBuilder { responder in
            GuardedChildChannel(
                inner: HTTP1WebSocketUpgradeChannel(responder: responder, webSocketResponder: webSocketResponder, configuration: configuration),
                counter: counter
            )
        }
    }
}

/// Enforces ``ConnectionLimits`` on one connection, seeing its requests as the HTTP decoder reads them:
/// the caps when it opens; the head deadline whenever no request is in progress (none being read, none
/// being answered: pipelined requests and answers given before their body was read are counted); the body
/// deadline while a body is read; the write deadline while a client does not take what is sent; an answer
/// to a request the decoder cannot read (400, then close, where Hummingbird would leave the client
/// waiting); and, at shutdown, the close of a connection with no request in progress. Once the connection
/// is upgraded (a WebSocket: what passes is no longer HTTP) only the write deadline applies.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    // `Any`: after an upgrade, bytes the HTTP decoder still held, and WebSocket frames, pass through here.
    typealias InboundIn = Any
    typealias InboundOut = Any
    typealias OutboundIn = Any
    typealias OutboundOut = HTTPServerResponsePart

    /// The longest a body's bytes can extend its deadline: a year, far from any overflow.
    static let maxAllowance = TimeAmount.hours(24 * 365)

    let counter: ConnectionCounter
    let logger: Logger
    var limits: ConnectionLimits { counter.limits }
    /// Requests whose head came in and whose answer has not ended.
    var inFlight = 0
    /// Whether a request's body is being read.
    var readingBody = false
    /// Whether the connection has switched protocols (no more HTTP requests, no head or body deadlines).
    var upgraded = false
    /// Whether a request's head came in on this connection (before it, the WebSocket upgrade handler waits).
    var sawRequest = false
    /// When the connection is closed unless something happens first, and why; nil when no deadline runs.
    var deadline: (at: NIODeadline, reason: String)?
    /// The timer that checks ``deadline``, and when it fires. Deadlines move with every request, so the
    /// timer is not moved with them: when it fires before the deadline it is set again for the deadline
    /// (a timer a few seconds, not three each request); only a deadline earlier than it moves it.
    var timer: (task: Scheduled<Void>, at: NIODeadline)?
    var writeDeadline: Scheduled<Void>?
    /// Body bytes received, and the time sdbox has waited for them, in the current request.
    var bodyBytes = 0
    var waited = TimeAmount.zero
    /// Since when sdbox has been asking for body bytes, if it is.
    var waitingSince: NIODeadline?

    init(counter: ConnectionCounter, logger: Logger) {
        self.counter = counter
        self.logger = logger
    }

    var isIdle: Bool { inFlight == 0 && !readingBody }

    /// Closes the connection. Before its first request, Hummingbird's WebSocket upgrade handler still waits
    /// for one and would log the close as an error ("Error handling upgrade result"); it is told first that
    /// the input ended, as when a client goes away, and lets go quietly.
    func close(_ context: ChannelHandlerContext) {
        if !sawRequest { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        context.close(promise: nil)
    }

    func channelActive(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        guard counter.open(address) else {
            logger.notice("connection refused: too many open connections", metadata: ["address": "\(address)"])
            close(context)
            return
        }
        let counter = counter
        context.channel.closeFuture.whenComplete { _ in counter.close(address) }
        armHeadDeadline(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarmAll()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        disarmAll()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !upgraded, let part = unwrapInboundIn(data) as? HTTPServerRequestPart else {
            context.fireChannelRead(data)
            return
        }
        switch part {
        case .head:
            sawRequest = true
            inFlight += 1
            readingBody = true
            bodyBytes = 0
            waited = .zero
            waitingSince = .now()
            armBodyDeadline(context)
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
            armBodyDeadline(context)
        case .end:
            readingBody = false
            waitingSince = nil
            // Answered before its body was all read: the connection is idle now.
            if isIdle { armHeadDeadline(context) } else { disarm() }
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if readingBody, !upgraded, waitingSince == nil {
            waitingSince = .now()
            armBodyDeadline(context)
        }
        context.read()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if readingBody, let since = waitingSince {
            waited = waited + (NIODeadline.now() - since)
            waitingSince = nil
            disarm()
        }
        context.fireChannelReadComplete()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        guard !upgraded, let part = unwrapOutboundIn(data) as? HTTPServerResponsePart else { return }
        switch part {
        case .head(let head) where head.status == .switchingProtocols:
            upgraded = true
            disarm()
        case .end where inFlight > 0:
            inFlight -= 1
            if isIdle { armHeadDeadline(context) }
        default:
            break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // A client that stops taking an answer (a stream, a download) holds the connection and what
        // serves it: it has `headerTimeoutSeconds` to take some more.
        if context.channel.isWritable {
            writeDeadline?.cancel()
            writeDeadline = nil
        } else if writeDeadline == nil {
            let logger = logger
            writeDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(Int64(limits.headerTimeoutSeconds))) { [self] in
                logger.notice("connection closed: the client stopped reading", metadata: ["address": "\(context.channel.remoteAddress?.ipAddress ?? "unknown")"])
                close(context)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        // The decoder cannot read the request (an unknown method, a malformed head): answer and close,
        // rather than leave the client, and a shutdown, waiting.
        disarm()
        let body = ByteBuffer(string: #"{"code":400,"detail":"the request is not valid HTTP/1.1","error":"bad request","message":"the request is not valid HTTP/1.1"}"#)
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Connection", "close")])
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .badRequest, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { [self] _ in close(context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // At shutdown, a connection without a request in progress closes now: a client that is slowly
        // sending a head (or nothing) must not hold the process up.
        if event is ChannelShouldQuiesceEvent, isIdle, !upgraded {
            close(context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: Deadlines

    func armHeadDeadline(_ context: ChannelHandlerContext) {
        disarm()
        schedule(context, at: .now() + .seconds(Int64(limits.headerTimeoutSeconds)), reason: "request head")
    }

    /// The body's deadline: its allowance (the body timeout, plus what its bytes earned, less the time
    /// already waited) from when sdbox began asking; none while sdbox is not asking.
    func armBodyDeadline(_ context: ChannelHandlerContext) {
        disarm()
        guard let since = waitingSince else { return }
        let earnedSeconds = min(Double(bodyBytes) / Double(max(1, limits.minBodyBytesPerSecond)), Double(Self.maxAllowance.nanoseconds) / 1e9)
        let allowance = min(.seconds(Int64(limits.bodyTimeoutSeconds)) + .nanoseconds(Int64(earnedSeconds * 1e9)), Self.maxAllowance) - waited
        schedule(context, at: since + allowance, reason: "request body")
    }

    func schedule(_ context: ChannelHandlerContext, at instant: NIODeadline, reason: String) {
        deadline = (instant, reason)
        if let timer, timer.at <= instant { return }
        timer?.task.cancel()
        setTimer(context, at: instant)
    }

    func setTimer(_ context: ChannelHandlerContext, at instant: NIODeadline) {
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: instant) { [self] in
            timer = nil
            guard let deadline else { return }
            guard NIODeadline.now() >= deadline.at else {
                setTimer(context, at: deadline.at)
                return
            }
            logger.notice("connection closed: \(deadline.reason) too slow", metadata: ["address": "\(context.channel.remoteAddress?.ipAddress ?? "unknown")"])
            close(context)
        }
        timer = (task, instant)
    }

    /// Stops the deadline; the timer, if set, finds none when it fires.
    func disarm() {
        deadline = nil
    }

    func disarmAll() {
        disarm()
        timer?.task.cancel()
        timer = nil
        writeDeadline?.cancel()
        writeDeadline = nil
    }
}
