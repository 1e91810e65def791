import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import ServiceLifecycle
import UnixSignals

/// The gateway as a swift-service-lifecycle service: serves until a graceful shutdown
/// (SIGTERM/SIGINT), reloading the configuration on SIGHUP, then drains.
public struct GatewayService: Service {
    let server: GatewayServer

    public init(server: GatewayServer) {
        self.server = server
    }

    public func run() async throws {
        try await server.start()
        let server = self.server
        // The control plane on its Unix socket, when configured.
        var control: (socket: ControlSocket, grpc: GRPCServer<HTTP2ServerTransport.Posix>)?
        if let settings = server.controlSocket {
            let socket: ControlSocket
            do {
                socket = try ControlSocket(path: settings.path)
            } catch {
                await server.shutdown(timeout: .zero)
                throw GatewayStartupError(reasons: ["control: \(error)"])
            }
            var config = HTTP2ServerTransport.Posix.Config.defaults
            // The service answers RESOURCE_EXHAUSTED above the limit; the transport only stops
            // what is far beyond it (twice the limit), where it can only reset the stream.
            config.rpc.maxRequestPayloadSize = settings.maxMessageBytes.multipliedReportingOverflow(by: 2).overflow
                ? Int.max : settings.maxMessageBytes * 2
            let transport = HTTP2ServerTransport.Posix(
                address: .unixDomainSocket(path: settings.path), transportSecurity: .plaintext, config: config)
            control = (socket, GRPCServer(transport: transport, services: [server.makeControlService(maxMessageBytes: settings.maxMessageBytes)]))
        }
        // Each child says whether its end should end the service (only the shutdown does).
        await withTaskGroup(of: Bool.self) { group in
            if let control {
                group.addTask {
                    do {
                        try await control.grpc.serve()
                    } catch where !Task.isCancelled {
                        server.logControlFailure(error)
                    } catch {
                        // Cancelled by the shutdown: nothing to report.
                    }
                    return false
                }
                group.addTask {
                    if (try? await control.grpc.listeningAddress) != nil {
                        do {
                            try control.socket.restrict(mode: server.controlSocket?.mode ?? 0o600)
                            server.logControlListening(path: control.socket.path)
                        } catch {
                            server.logControlFailure(error)
                        }
                    }
                    return false
                }
            }
            group.addTask {
                let hangups = await UnixSignalsSequence(trapping: .sighup)
                for await _ in hangups.cancelOnGracefulShutdown() {
                    _ = await runBlocking(on: server.updates) { server.reload(source: .signal) }
                }
                return false
            }
            group.addTask {
                try? await gracefulShutdown()
                return true
            }
            while let endsService = await group.next(), !endsService {}
            control?.grpc.beginGracefulShutdown()
            group.cancelAll()
        }
        await server.shutdown(timeout: server.shutdownTimeout)
        _ = control  // the socket file and its lock are released with it
    }
}
