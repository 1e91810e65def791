// libFuzzer harness for certgate's input decoders. Built and run by scripts/fuzz.sh;
// not part of the SwiftPM package (it links against the modules scripts/fuzz.sh builds
// into .build-fuzz with coverage instrumentation).
//
// One binary, four targets, chosen by CERTGATE_FUZZ_TARGET:
//   config   GatewayConfiguration.parse(yaml:file:baseDirectory:) (+ problemsForServing, error text)
//   pem      PEMMaterialParser (the text as PEM; the bytes as DER in CERTIFICATE and key blocks),
//            MaterialSource classification (no file is read)
//   sni      ServerName.normalize and NamePattern.parse (with their invariants checked)
//   control  Certgate_Control_V1_CertificateEntry(serializedBytes:) → Certgate_Control_V1_CertificateEntry.conf()
//
// A throw is a normal outcome; a trap, a hang or a broken invariant (precondition) is a bug.
// CERTGATE_FUZZ_VERBOSE=1 prints each input's outcome (to see what a seed or crash reaches):
//   CERTGATE_FUZZ_TARGET=config CERTGATE_FUZZ_VERBOSE=1 .build-fuzz/certgate-fuzz Fuzz/seeds/config/*

import CertificateKit
import ControlProtocol
import Foundation
@testable import Gateway
import SwiftASN1

enum FuzzTarget: String, CaseIterable {
    case config, pem, sni, control

    static let selected: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["CERTGATE_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
            FileHandle.standardError.write(Data("set CERTGATE_FUZZ_TARGET to one of: \(names)\n".utf8))
            exit(2)
        }
        return target
    }()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func certgateFuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    switch FuzzTarget.selected {
    case .config: fuzzConfiguration(bytes)
    case .pem: fuzzPEM(bytes)
    case .sni: fuzzServerName(bytes)
    case .control: fuzzControlEntry(bytes)
    }
    return 0
}

let verbose = ProcessInfo.processInfo.environment["CERTGATE_FUZZ_VERBOSE"] == "1"

/// Touches a value so the optimiser keeps the work that made it; prints it when verbose.
@inline(never)
func consume<T>(_ value: T) {
    if verbose { print("  \(String(reflecting: value).prefix(300))") }
    withExtendedLifetime(value) {}
}

// MARK: - 1. YAML configuration

func fuzzConfiguration(_ bytes: UnsafeBufferPointer<UInt8>) {
    // `load(path:)` refuses text that is not UTF-8; everything else reaches `parse`.
    guard let yaml = String(validating: bytes, as: UTF8.self) else { return }
    do {
        let configuration = try GatewayConfiguration.parse(yaml: yaml, file: "fuzz.yaml", baseDirectory: "/nonexistent")
        let problems = configuration.problemsForServing(file: "fuzz.yaml")
        consume(problems.map(\.description))
        consume(configuration.resolvedStateDirectory)
    } catch {
        // What `certgate check` prints.
        consume(error.description)
    }
}

// MARK: - 2. PEM / DER material

private let derLabels = ["CERTIFICATE", "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"]

func fuzzPEM(_ bytes: UnsafeBufferPointer<UInt8>) {
    let text = String(decoding: bytes, as: UTF8.self)
    parseMaterial(text)
    consume(MaterialSource(text))
    consume(MaterialSource.mayBeKeyMaterial(text))

    // The raw bytes as the DER of a block, so swift-certificates' and swift-crypto's DER
    // parsers see arbitrary input (not only what survives PEM decoding). The first byte
    // picks the label, so every input is parsed once.
    guard let first = bytes.first else { return }
    let der = Array(bytes.dropFirst())
    let label = derLabels[Int(first) % derLabels.count]
    let pem = PEMDocument(type: label, derBytes: der).pemString
    parseMaterial(pem)
    // A certificate followed by its key, as a combined file is read.
    if label == "CERTIFICATE", first & 0x80 != 0 {
        parseMaterial(pem + "\n" + PEMDocument(type: "PRIVATE KEY", derBytes: der).pemString)
    }
}

private func parseMaterial(_ text: String) {
    do {
        consume(try PEMMaterialParser.certificates(fromPEM: text).map(\.pem))
    } catch {
        consume(error.description)
    }
    consume(PEMMaterialParser.containsPrivateKey(text))
    do {
        consume(try PEMMaterialParser.privateKey(fromPEM: text).pem)
    } catch {
        consume(error.description)
    }
}

// MARK: - 3. SNI and name patterns

func fuzzServerName(_ bytes: UnsafeBufferPointer<UInt8>) {
    let text = String(decoding: bytes, as: UTF8.self)
    if let name = ServerName.normalize(text) {
        checkServerName(name, from: text)
    }
    checkPattern(text)

    // "pattern NUL name": a pattern matched against a name.
    if let nul = bytes.firstIndex(of: 0) {
        let patternText = String(decoding: bytes[..<nul], as: UTF8.self)
        let nameText = String(decoding: bytes[(nul + 1)...], as: UTF8.self)
        if case .success(let pattern) = NamePattern.parse(patternText), let name = ServerName.normalize(nameText) {
            let matches = pattern.matches(name)
            if case .exact(let own) = pattern {
                precondition(matches == (own == name), "exact pattern \(own) vs \(name): matches is \(matches)")
            }
        }
    }
}

private func checkServerName(_ name: ServerName, from raw: String) {
    let octets = Array(name.text.utf8)
    precondition(!octets.isEmpty && octets.count <= 253, "normalised name of \(octets.count) octets")
    precondition(octets.allSatisfy { byte in
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
    }, "normalised name holds an octet outside a-z 0-9 - .")
    for label in name.text.split(separator: ".", omittingEmptySubsequences: false) {
        precondition(!label.isEmpty && label.utf8.count <= 63, "label of \(label.utf8.count) octets")
        precondition(!label.hasPrefix("-") && !label.hasSuffix("-"), "label starts or ends with a hyphen")
    }
    precondition(ServerName.normalize(name.text) == name, "normalize is not idempotent")
    precondition(name.text == raw.lowercased() || name.text + "." == raw.lowercased(), "normalize changed more than case and one trailing dot")
    consume(name.parent)
}

private func checkPattern(_ text: String) {
    switch NamePattern.parse(text) {
    case .success(let pattern):
        // No text with a NUL in it is a pattern (inet_pton once stopped at the NUL and took
        // "::" NUL as the address ::; see FuzzRegressionTests).
        precondition(!text.utf8.contains(0), "a pattern with a NUL in it parsed as \(pattern)")
        // The canonical text parses back to the same pattern — except an exact name that
        // reads as an IPv4 address once its trailing dot is stripped ("1.0.0.1." is the DNS
        // name 1.0.0.1, written "1.0.0.1" like the address; known, reported, not changed).
        guard case .success(let again) = NamePattern.parse(pattern.description) else {
            preconditionFailure("the description of a parsed pattern does not parse")
        }
        if case .exact(let name) = pattern, case .ip = again, IPAddress(name.text) != nil { return }
        precondition(again == pattern, "pattern does not survive its description")
    case .failure(let error):
        consume(error.description)
    }
}

// MARK: - 4. Control protocol entry → CertificateConf

func fuzzControlEntry(_ bytes: UnsafeBufferPointer<UInt8>) {
    guard let entry = try? Certgate_Control_V1_CertificateEntry(serializedBytes: Array(bytes)) else { return }
    let conf: CertificateConf
    do {
        conf = try entry.conf()
    } catch {
        consume(error.description)
        return
    }
    // What the update path does next without reading files: classify the material,
    // parse the names.
    for value in [conf.tlsCert, conf.tlsKey].compactMap({ $0 }) {
        consume(MaterialSource(value))
    }
    for domain in conf.domains?.items ?? [] {
        consume(NamePattern.parse(domain))
    }
    precondition(conf.domains == nil || !entry.domains.isEmpty, "domains appeared from nothing")
}
