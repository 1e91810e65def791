/// Nanoseconds in a duration.
public func nanoseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e9 + Double(duration.components.attoseconds) / 1e9
}

/// The value below which `fraction` of the samples fall (nearest rank).
public func percentile(_ values: [Double], _ fraction: Double) -> Double {
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
}

public func median(_ values: [Double]) -> Double { percentile(values, 0.5) }
