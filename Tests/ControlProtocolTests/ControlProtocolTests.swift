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

    /// The generated type of each message of control.proto, by its proto name.
    static let generatedTypes: [String: any SwiftProtobuf.Message.Type] = [
            "CertificateEntry": Certgate_Control_V1_CertificateEntry.self,
            "ApplyCertificateSetRequest": Certgate_Control_V1_ApplyCertificateSetRequest.self,
            "UpdateCertificatesRequest": Certgate_Control_V1_UpdateCertificatesRequest.self,
            "EntryError": Certgate_Control_V1_EntryError.self,
            "UpdateResult": Certgate_Control_V1_UpdateResult.self,
            "ListCertificatesRequest": Certgate_Control_V1_ListCertificatesRequest.self,
            "CertificateSummary": Certgate_Control_V1_CertificateSummary.self,
            "RenewCertificateRequest": Certgate_Control_V1_RenewCertificateRequest.self,
            "RenewCertificateResponse": Certgate_Control_V1_RenewCertificateResponse.self,
            "ListCertificatesResponse": Certgate_Control_V1_ListCertificatesResponse.self,
            "OnDemandCertificate": Certgate_Control_V1_OnDemandCertificate.self,
            "GetStatusRequest": Certgate_Control_V1_GetStatusRequest.self,
            "Listener": Certgate_Control_V1_Listener.self,
            "Status": Certgate_Control_V1_Status.self,
            "OnDemandStatus": Certgate_Control_V1_OnDemandStatus.self,
            "SharedState": Certgate_Control_V1_SharedState.self,
            "ReloadConfigRequest": Certgate_Control_V1_ReloadConfigRequest.self,
            "WatchEventsRequest": Certgate_Control_V1_WatchEventsRequest.self,
            "Event": Certgate_Control_V1_Event.self,
            "SetChanged": Certgate_Control_V1_SetChanged.self,
            "ValidityChanged": Certgate_Control_V1_ValidityChanged.self,
            "AcmeChanged": Certgate_Control_V1_AcmeChanged.self,
    ]

    /// A message's fields as control.proto declares them: name, number, and a value of its
    /// type in text format.
    struct DeclaredField {
        let name: String
        let number: Int
        let textValue: String
    }

    /// The messages of control.proto and their fields (oneof members included).
    static func declaredMessages() throws -> [String: [DeclaredField]] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let proto = try String(contentsOf: root.appendingPathComponent("Protos/certgate/control/v1/control.proto"), encoding: .utf8)
        let enums = Set(proto.matches(of: /(?m)^enum (\w+) \{/).map { String($0.1) })
        var messages: [String: [DeclaredField]] = [:]
        var current: String?
        var depth = 0
        for line in proto.split(separator: "\n", omittingEmptySubsequences: false) {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("//") { continue }
            if current == nil, let start = line.firstMatch(of: /^message (\w+) \{(\})?/) {
                messages[String(start.1)] = []
                if start.2 == nil { current = String(start.1); depth = 1 }
                continue
            }
            guard let message = current else { continue }
            if text.hasSuffix("{") { depth += 1; continue }
            if text == "}" {
                depth -= 1
                if depth == 0 { current = nil }
                continue
            }
            guard let field = text.firstMatch(of: /^(?:repeated |optional )?([\w.]+) (\w+) = (\d+);/), let number = Int(field.3) else { continue }
            let type = String(field.1)
            let value: String
            switch type {
            case "string", "bytes": value = "\"x\""
            case "bool": value = "true"
            case "double", "float": value = "1.5"
            case "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64": value = "1"
            default: value = enums.contains(type) ? "1" : "{}"
            }
            messages[message, default: []].append(DeclaredField(name: String(field.2), number: number, textValue: value))
        }
        return messages
    }

    /// The field number of the first field in `bytes` (protobuf's wire format).
    static func firstFieldNumber(_ bytes: [UInt8]) -> Int? {
        var tag = 0, shift = 0
        for byte in bytes {
            tag |= Int(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return tag >> 3 }
            shift += 7
        }
        return nil
    }

    static func fieldsAgree<M: SwiftProtobuf.Message>(_ type: M.Type, _ fields: [DeclaredField]) throws -> [String] {
        var problems: [String] = []
        for field in fields {
            do {
                let message = try M(textFormatString: "\(field.name): \(field.textValue)")
                let bytes: [UInt8] = try message.serializedBytes()
                let number = Self.firstFieldNumber(bytes)
                if number != field.number { problems.append("\(M.protoMessageName).\(field.name): number \(number.map(String.init) ?? "none"), declared \(field.number)") }
            } catch {
                problems.append("\(M.protoMessageName).\(field.name): not a field of the generated type")
            }
        }
        return problems
    }

    @Test("the committed Swift code is what Protos/ declares (scripts/generate-protos.sh's output is committed): every message of control.proto has its generated type, and every field is known by its proto name with its number")
    func generatedCodeMatchesTheProto() throws {
        let declared = try Self.declaredMessages()
        #expect(declared.count == 22)
        #expect(Set(declared.keys) == Set(Self.generatedTypes.keys))
        #expect(declared["CertificateEntry"]?.count == 13)
        var problems: [String] = []
        for (name, fields) in declared.sorted(by: { $0.key < $1.key }) {
            guard let type = Self.generatedTypes[name] else { continue }
            #expect(type.protoMessageName == "certgate.control.v1." + name)
            problems += try Self.fieldsAgree(type, fields)
        }
        #expect(problems == [])
    }
}
