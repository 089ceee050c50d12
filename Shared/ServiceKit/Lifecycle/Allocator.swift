#if canImport(Glibc)
import Glibc
#endif

/// The process's allocator settings for batch-shaped work (every service runs it at start).
public enum Allocator {
    /// Makes glibc's malloc keep up to 256 MiB of freed heap, grow it 64 MiB at a time, and serve
    /// blocks up to 32 MiB from the heap instead of fresh mappings. Each batch allocates and frees
    /// megabytes of records; with the default dynamic thresholds glibc hands that memory back to
    /// the kernel after every batch and the next one faults it in again, zeroed page by page
    /// (`clear_page_erms` was ~8% of the raw path's samples). Setting the trim threshold also turns
    /// off glibc's dynamic mmap threshold, which would leave every block over 128 KiB (a batch's
    /// arrays) mapped and zeroed afresh (14% of the raw path's samples), hence the explicit
    /// mmap threshold. Process-wide: call once at start, before the first batch. Does nothing
    /// where `mallopt` is not glibc's.
    public static func keepFreedMemory() {
        #if canImport(Glibc)
        // `mallopt` and its parameters live in <malloc.h>, which the Glibc module does not export.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let trimThreshold: Int32 = -1  // M_TRIM_THRESHOLD
        let topPad: Int32 = -2  // M_TOP_PAD
        let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD
        _ = mallopt(trimThreshold, 256 << 20)
        _ = mallopt(topPad, 64 << 20)
        _ = mallopt(mmapThreshold, 32 << 20)
        #endif
    }
}
