#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// CPU time spent so far (user plus system), in seconds. Unlike wall time it does not grow with
/// whatever else loads the machine, so services count their stages' costs with it and the
/// benchmarks print it.
public enum CPUTime {
    /// The calling thread's.
    public static func thread() -> Double { seconds(CLOCK_THREAD_CPUTIME_ID) }

    /// The whole process's, every thread included.
    public static func process() -> Double { seconds(CLOCK_PROCESS_CPUTIME_ID) }

    private static func seconds(_ clock: clockid_t) -> Double {
        var time = timespec()
        clock_gettime(clock, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
