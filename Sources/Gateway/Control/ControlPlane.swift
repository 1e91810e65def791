import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging

/// The gRPC control plane on its Unix socket (`control:`): the socket file (locked,
/// restricted to `mode` once bound) and the server of ``ControlService``.
struct ControlPlane: Sendable {
    let socket: ControlSocket
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let mode: Int
    let logger: Logger

    /// Prepares the socket; nothing is bound until ``serve()``.
    /// - Throws: the socket's folder cannot be made, or another certgate holds it.
    init(path: String, mode: Int, maxMessageBytes: Int, service: ControlService, logger: Logger) throws(GatewayStartupError) {
        do {
            socket = try ControlSocket(path: path)
        } catch {
            throw GatewayStartupError(reasons: ["control: \(error.description)"])
        }
        var config = HTTP2ServerTransport.Posix.Config.defaults
        // The service answers RESOURCE_EXHAUSTED above the limit; the transport only stops
        // what is far beyond it (twice the limit), where it can only reset the stream.
        config.rpc.maxRequestPayloadSize = maxMessageBytes.multipliedReportingOverflow(by: 2).overflow ? Int.max : maxMessageBytes * 2
        let transport = HTTP2ServerTransport.Posix(
            address: .unixDomainSocket(path: path), transportSecurity: .plaintext, config: config)
        server = GRPCServer(transport: transport, services: [service])
        self.mode = mode
        self.logger = logger
    }

    /// Serves until ``beginShutdown()`` (or the task is cancelled); restricts the socket's
    /// mode as soon as it is bound. A failure is logged: the gateway keeps serving TLS.
    func serve() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await server.serve()
                } catch where !Task.isCancelled {
                    // gRPC's error text names its own internals; its code says enough.
                    let code = (error as? RuntimeError).map { "\($0.code)" } ?? "unexpected"
                    logger.error("control socket failed; TLS keeps serving", metadata: ["socket": "\(socket.path)", "code": "\(code)"])
                } catch {
                    // Cancelled by the shutdown: nothing to report.
                }
            }
            group.addTask {
                guard (try? await server.listeningAddress) != nil else { return }
                do throws(ControlSocket.Failure) {
                    try socket.restrict(mode: mode)
                    logger.notice("control socket listening", metadata: ["socket": "\(socket.path)"])
                } catch {
                    logger.error("control socket failed; TLS keeps serving", metadata: ["reason": "\(error.description)"])
                }
            }
        }
    }

    func beginShutdown() {
        server.beginGracefulShutdown()
    }
}
