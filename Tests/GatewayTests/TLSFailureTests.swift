import Foundation
import NIOSSL
import Testing
@testable import Gateway

@Suite("Why a TLS handshake failed, in certgate's words", .timeLimit(.minutes(3)))
struct TLSFailureTests {
    @Test("BoringSSL's reason name is read from its error string; the source path and codes are not kept")
    func reasonNames() {
        let text = "sslError([Error: 268435709 error:100000fd:SSL routines:OPENSSL_internal:NO_SHARED_CIPHER at /src/boringssl/ssl/handshake_server.cc:672])"
        #expect(TLSFailure.reasonNames(in: text) == ["NO_SHARED_CIPHER"])
        #expect(TLSFailure.reasonNames(in: "no error here").isEmpty)
        #expect(TLSFailure.describe(NIOSSLError.uncleanShutdown) == "the client closed the connection during the handshake")
        #expect(TLSFailure.describe(NIOSSLError.handshakeFailed(.unknownError([]))) == "the TLS library refused the handshake")
    }

    @Test("plain HTTP sent to a TLS listener is logged as such, with no library text")
    func plainHTTPOnTLSPort() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: GatewayInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        _ = try await runTool("/usr/bin/curl", ["-sS", "--max-time", "5", "http://127.0.0.1:\(gateway.port)/"])
        #expect(try await gateway.waitForLog("reason=plain HTTP on a TLS port"), "\(gateway.logText)")
        #expect(!gateway.logText.contains("OPENSSL_internal"))
        #expect(!gateway.logText.contains(".cc:"))
    }
}
