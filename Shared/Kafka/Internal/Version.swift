import CRdKafka

enum VersionCheck {
    static var runtime: (Int, String) { (Int(rd_kafka_version()), String(cString: rd_kafka_version_str())) }
    static var header: Int { Int(RD_KAFKA_VERSION) }
}
