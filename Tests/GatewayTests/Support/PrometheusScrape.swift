import Foundation

/// A Prometheus scrape parsed by the text-format rules: `name{label="value",...} value`.
struct PrometheusScrape {
    struct Sample: Hashable {
        let name: String
        let labels: [String: String]
    }

    let samples: [Sample: Double]

    init(_ text: String) throws {
        var samples: [Sample: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.isEmpty {
            let (series, valueText) = (line[..<line.lastIndex(of: " ")!], line[line.index(after: line.lastIndex(of: " ")!)...])
            guard let value = Double(valueText) else { throw GatewayProcessError(message: "bad value in: \(line)") }
            var name = String(series)
            var labels: [String: String] = [:]
            if let brace = series.firstIndex(of: "{") {
                name = String(series[..<brace])
                let body = series[series.index(after: brace)..<series.index(before: series.endIndex)]
                var rest = Substring(body)
                while !rest.isEmpty {
                    guard let equals = rest.firstIndex(of: "=") else { break }
                    let key = String(rest[..<equals])
                    rest = rest[rest.index(equals, offsetBy: 2)...]  // skip ="
                    guard let quote = rest.firstIndex(of: "\"") else { throw GatewayProcessError(message: "bad labels in: \(line)") }
                    labels[key] = String(rest[..<quote])
                    rest = rest[rest.index(after: quote)...]
                    if rest.first == "," { rest = rest.dropFirst() }
                }
            }
            samples[Sample(name: name, labels: labels)] = value
        }
        self.samples = samples
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples[Sample(name: name, labels: labels)]
    }
}

/// `GET /metrics` with curl, parsed.
func scrapeMetrics(port: Int) async throws -> PrometheusScrape {
    let (status, text) = try await runTool("/usr/bin/curl", ["-sS", "--fail", "http://127.0.0.1:\(port)/metrics"])
    guard status == 0 else { throw GatewayProcessError(message: text) }
    return try PrometheusScrape(text)
}
