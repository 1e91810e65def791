import BenchmarkSupport
import Dispatch
import Foundation
import Synchronization

// certgate-gen-certs COUNT FOLDER
//
// Writes COUNT ECDSA P-256 leaves, one SNI name each (e0000001.bench.test, …), signed by
// one CA, for the startup benchmark (bench/startup.sh): FOLDER/ca.pem, FOLDER/certs/NAME.pem
// and NAME.pem.key (the name HAProxy looks for next to a certificate), FOLDER/spare.pem and
// spare.pem.key (a second leaf for the last name, for a reload that changes one entry),
// FOLDER/names.txt (one name a line, in order) and FOLDER/certificates.yaml (the
// `certificates:` section for certgate, paths relative to FOLDER). Signing runs on every
// core; no openssl process per certificate.
let arguments = CommandLine.arguments
guard arguments.count == 3, let count = Int(arguments[1]), count > 0 else {
    FileHandle.standardError.write(Data("usage: certgate-gen-certs COUNT FOLDER\n".utf8))
    exit(2)
}
let folder = URL(fileURLWithPath: arguments[2])
let certificates = folder.appendingPathComponent("certs")
try FileManager.default.createDirectory(at: certificates, withIntermediateDirectories: true)
let authority = try BenchCertificates()
try authority.caCert.serializeAsPEM().pemString.appending("\n").write(to: folder.appendingPathComponent("ca.pem"), atomically: true, encoding: .utf8)

let names = (1...count).map { String(format: "e%07d.bench.test", $0) }
let failures = Atomic<Int>(0)
DispatchQueue.concurrentPerform(iterations: count) { index in
    let name = names[index]
    do {
        let leaf = try authority.leaf(names: [name])
        try (leaf.cert + "\n").write(to: certificates.appendingPathComponent("\(name).pem"), atomically: false, encoding: .utf8)
        try (leaf.key + "\n").write(to: certificates.appendingPathComponent("\(name).pem.key"), atomically: false, encoding: .utf8)
    } catch {
        failures.add(1, ordering: .relaxed)
    }
}
guard failures.load(ordering: .relaxed) == 0 else {
    FileHandle.standardError.write(Data("\(failures.load(ordering: .relaxed)) certificates could not be written\n".utf8))
    exit(1)
}
let spare = try authority.leaf(names: [names[count - 1]])
try (spare.cert + "\n").write(to: folder.appendingPathComponent("spare.pem"), atomically: true, encoding: .utf8)
try (spare.key + "\n").write(to: folder.appendingPathComponent("spare.pem.key"), atomically: true, encoding: .utf8)
try (names.joined(separator: "\n") + "\n").write(to: folder.appendingPathComponent("names.txt"), atomically: true, encoding: .utf8)
var yaml = "certificates:\n"
yaml.reserveCapacity(count * 80)
for name in names {
    yaml += "  \(name): { tls_cert: certs/\(name).pem, tls_key: certs/\(name).pem.key }\n"
}
try yaml.write(to: folder.appendingPathComponent("certificates.yaml"), atomically: true, encoding: .utf8)
print("wrote \(count) certificates to \(folder.path)")
