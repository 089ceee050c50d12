#if canImport(Glibc)
import Glibc
#endif
import Foundation

// Measuring helpers every benchmark shares: durations in seconds, the machine's load, and CPU time,
// which does not grow with whatever else loads the machine (on 2 shared cores, wall time alone
// says little).

/// `duration` in seconds.
func seconds(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return Double(whole) + Double(attoseconds) / 1e18
}

/// CLOCK_MONOTONIC in seconds: the clock of `perf record -k CLOCK_MONOTONIC`, so a phase's
/// samples can be selected with `perf report --time start,end`.
func monotonicSeconds() -> Double {
    Double(DispatchTime.now().uptimeNanoseconds) / 1e9
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
func loadAverage() -> String {
    (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
}

/// User plus system CPU time of this process so far, in seconds.
func processCPUSeconds() -> Double { cpuSeconds(RUSAGE_SELF.rawValue) }

/// User plus system CPU time of the calling thread so far, in seconds.
func threadCPUSeconds() -> Double { cpuSeconds(rusageThread) }

/// Linux's `RUSAGE_THREAD`, which the Glibc module does not export (it needs `_GNU_SOURCE`).
private let rusageThread: Int32 = 1

private func cpuSeconds(_ who: Int32) -> Double {
    var usage = rusage()
    getrusage(who, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}
