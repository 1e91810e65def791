import CertificateKit
import Foundation

/// What the gateway tells watchers (`WatchEvents`): the set changed, or an entry's validity
/// state changed. The core emits these; `Control/ControlMessages.swift` alone maps them to
/// protobuf.
public enum GatewayEvent: Sendable, Equatable {
    /// A certificate set was committed (a new generation), whatever its source.
    case setChanged(SetChange)
    /// The validity monitor saw an entry's state change (at start, after an update, or at
    /// a periodic check).
    case validityChanged(ValidityChange)
    /// An `acme` entry's certificate was obtained or renewed (and committed), or an order
    /// for it failed.
    case acmeChanged(ACMEChange)

    public struct SetChange: Sendable, Equatable {
        public var time: Date
        public var generation: UInt64
        public var source: UpdateSource
        /// Entry names, sorted.
        public var added: [String]
        public var changed: [String]
        public var removed: [String]
        /// With `shared_state`: the node that committed it.
        public var node: String? = nil
    }

    public struct ValidityChange: Sendable, Equatable {
        public var time: Date
        public var entry: String
        /// None for an entry seen for the first time.
        public var previousState: CertificateValidity.State?
        public var state: CertificateValidity.State
        /// Whole days to the leaf's notAfter (negative once expired).
        public var daysLeft: Int
        public var notAfter: Date
    }

    public struct ACMEChange: Sendable, Equatable {
        public enum Result: String, Sendable {
            /// The entry's first certificate is committed and served.
            case obtained
            /// A new certificate replaced the entry's previous one.
            case renewed
            /// The order, or the commit of its result, failed; what was served still is.
            case failed
        }

        public var time: Date
        public var entry: String
        /// The CA's name (the entry's `acme` value).
        public var acme: String
        public var result: Result
        /// Why it failed (`failed` only).
        public var reason: String?
        /// The new certificate's notAfter and renewal time (`obtained`, `renewed`).
        public var notAfter: Date?
        public var renewAt: Date?
        /// Failures in a row and the next attempt (`failed` only).
        public var failures: Int
        public var nextAttempt: Date?
    }
}
