import CertificateKit
import Foundation

/// Where a node stands in a fleet's history: which fleet (a database once set up gets an
/// identity of its own, so a node never mistakes a recreated one for the one it followed)
/// and which generation.
struct FleetPosition: Sendable, Equatable, CustomStringConvertible {
    var fleet: String
    var generation: UInt64
    var description: String { "generation \(generation) of fleet \(fleet)" }
}

/// What a fleet committed after a node's position: the rows to upsert and the names to
/// remove that bring the node's set to exactly the fleet's set at `position` — or, when
/// `whole`, every row of that set (every other name goes).
struct FleetChanges: Sendable {
    var position: FleetPosition
    var committedAt: Date
    var source: UpdateSource
    /// The node that committed `position`.
    var node: String
    var rows: [StoredRow]
    var removed: [String]
    var whole: Bool
    /// Every acme entry of the fleet as sent (pending and on-demand ones, in no set, too).
    var acmeEntries: [String: CertificateConf] = [:]
}
