import ControlProtocol
import Foundation
import SwiftProtobuf
import Testing

@Suite("Control protocol (generated from Protos/)", .timeLimit(.minutes(2)))
struct ControlProtocolTests {
    @Test("the service and its methods carry the contract's names")
    func contractNames() {
        #expect(Certgate_Control_V1_CertificateControl.descriptor.fullyQualifiedService == "certgate.control.v1.CertificateControl")
        let methods = Certgate_Control_V1_CertificateControl.Method.descriptors.map(\.method).sorted()
        #expect(methods == ["ApplyCertificateSet", "GetStatus", "ListCertificates", "ReloadConfig", "RenewCertificate", "UpdateCertificates", "WatchEvents"])
    }

    @Test("an update request and its result survive the wire format")
    func roundTrip() throws {
        var entry = Certgate_Control_V1_CertificateEntry()
        entry.name = "example"
        entry.tlsCert = "-----BEGIN CERTIFICATE-----\n..."
        entry.domains = ["example.test", "*.example.test"]
        entry.bufferDays = 14
        var request = Certgate_Control_V1_UpdateCertificatesRequest()
        request.upsert = [entry]
        request.delete = ["old"]
        request.expectedGeneration = 7
        request.policy = .keepLastGood
        let decoded = try Certgate_Control_V1_UpdateCertificatesRequest(serializedBytes: try request.serializedBytes() as [UInt8])
        #expect(decoded == request)
        #expect(decoded.hasExpectedGeneration)
        #expect(!Certgate_Control_V1_ApplyCertificateSetRequest().hasExpectedGeneration)

        var result = Certgate_Control_V1_UpdateResult()
        result.generation = 8
        result.errors = [.with { $0.entry = "bad"; $0.field = "tls_key"; $0.reason = "does not match" }]
        let json = try result.jsonString()
        #expect(json.contains("\"tls_key\""))
        #expect(try Certgate_Control_V1_UpdateResult(jsonString: json) == result)
    }
}
