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
        let control: ControlPlane?
        do {
            control = try server.makeControlPlane()
        } catch {
            await server.shutdown(timeout: .zero)
            throw error
        }
        // Each child says whether its end should end the service (only the shutdown does).
        await withTaskGroup(of: Bool.self) { group in
            if let control {
                group.addTask {
                    await control.serve()
                    return false
                }
            }
            group.addTask {
                let hangups = await UnixSignalsSequence(trapping: .sighup)
                for await _ in hangups.cancelOnGracefulShutdown() {
                    await server.reload(source: .signal)
                }
                return false
            }
            group.addTask {
                try? await gracefulShutdown()
                return true
            }
            while let endsService = await group.next(), !endsService {}
            control?.beginShutdown()
            group.cancelAll()
        }
        await server.shutdown(timeout: server.shutdownTimeout)
        _ = control  // the socket file and its lock are released with it
    }
}
