import Foundation

// Measuring helpers every benchmark shares: durations in seconds and the machine's load. CPU time,
// which does not grow with whatever else loads the machine (on 2 shared cores, wall time alone says
// little), is ServiceKit's `CPUTime`.

/// `duration` in seconds.
func seconds(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return Double(whole) + Double(attoseconds) / 1e18
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
func loadAverage() -> String {
    (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
}
