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
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                let hangups = await UnixSignalsSequence(trapping: .sighup)
                for await _ in hangups.cancelOnGracefulShutdown() {
                    server.reload(source: .signal)
                }
            }
            group.addTask {
                try? await gracefulShutdown()
            }
            await group.next()
            group.cancelAll()
        }
        await server.shutdown(timeout: server.shutdownTimeout)
    }
}
