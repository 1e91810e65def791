/// What started an update of the certificate set.
///
/// The raw values are the interface contract: the `source` label of
/// `certgate_updates_total`, `Status.last_update_source`, `SetChanged.source`, and the
/// `source` column of the state's `set_state` row (`acme` is new in round 2).
public enum UpdateSource: String, Sendable, Hashable, CaseIterable {
    /// The configuration file, read at start.
    case config
    /// The gRPC control plane, `certgate ctl reload` included.
    case control
    /// SIGHUP.
    case signal
    /// A certificate obtained or renewed by ACME.
    case acme
}
