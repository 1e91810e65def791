import CertificateKit

/// One `validity.notify` item: a webhook (HTTP POST of the JSON body) or a command (run
/// without a shell, the JSON on its standard input).
public enum NotifierConfiguration: Sendable, Decodable, Equatable {
    case webhook(url: String, timeout: ConfigDuration, retries: Int)
    case command(arguments: [String], timeout: ConfigDuration)

    enum CodingKeys: String, CodingKey, CaseIterable { case webhook, command, timeout, retries }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let timeout = try container.decodeIfPresent(ConfigDuration.self, forKey: .timeout) ?? ConfigDuration(.seconds(10), text: "10s")
        if let url = try container.decodeIfPresent(String.self, forKey: .webhook) {
            guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                throw DecodingError.dataCorruptedError(forKey: .webhook, in: container, debugDescription: "\(QuotedValue.quote(url)) is not an http(s) URL")
            }
            let retries = try container.decodeIfPresent(Int.self, forKey: .retries) ?? 3
            guard (0...10).contains(retries) else {
                throw DecodingError.dataCorruptedError(forKey: .retries, in: container, debugDescription: "retries is 0 to 10")
            }
            self = .webhook(url: url, timeout: timeout, retries: retries)
        } else if let arguments = try container.decodeIfPresent([String].self, forKey: .command) {
            guard let program = arguments.first, program.hasPrefix("/") else {
                throw DecodingError.dataCorruptedError(forKey: .command, in: container, debugDescription: "a command is a list whose first item is an absolute path (it runs without a shell)")
            }
            self = .command(arguments: arguments, timeout: timeout)
        } else {
            throw DecodingError.keyNotFound(CodingKeys.webhook, .init(codingPath: container.codingPath, debugDescription: "a notifier needs webhook or command"))
        }
    }
}
