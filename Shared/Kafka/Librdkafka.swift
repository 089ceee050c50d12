/// The librdkafka library this process runs with.
public enum Librdkafka {
    /// Oldest supported release: older ones mis-parse modern brokers' ApiVersions responses.
    public static let minimumVersion = 0x0202_0000

    /// The version loaded at run time: librdkafka's hex number (`0xMMmmrrpp`) and its text.
    public static var runtimeVersion: (Int, String) { VersionCheck.runtime }

    /// The version of the headers this module was compiled against (`0xMMmmrrpp`).
    public static var headerVersion: Int { VersionCheck.header }

    /// Throws ``KafkaError/Code/unsupportedLibrdkafka`` unless the runtime library is at least 2.2
    /// and has the same major.minor as the headers (a different library on the loader path is an
    /// error, not a silent downgrade).
    public static func checkVersion() throws(KafkaError) {
        let (runtime, text) = runtimeVersion
        guard runtime >= minimumVersion else {
            throw KafkaError(
                .unsupportedLibrdkafka,
                "librdkafka \(text) is loaded at run time but 2.2 or newer is required; run ./loop setup")
        }
        guard runtime >> 16 == headerVersion >> 16 else {
            throw KafkaError(
                .unsupportedLibrdkafka,
                "librdkafka \(text) is loaded at run time but the program was built against "
                    + "\(describe(headerVersion)); check the library path (rpath, LD_LIBRARY_PATH)")
        }
    }

    static func describe(_ version: Int) -> String {
        "\((version >> 24) & 0xff).\((version >> 16) & 0xff).\((version >> 8) & 0xff)"
    }
}
