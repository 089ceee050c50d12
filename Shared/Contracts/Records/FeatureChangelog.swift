/// The headers the feature-store puts on its `loop.features` records (the value is the entity's
/// encoded feature state, the key its entity). Readers that only want the latest state per entity
/// ignore them; the feature-store reads them back when it takes over a partition, and the scorer
/// uses them to score each request with the state as of that request.
public enum FeatureChangelogHeader {
    /// `<batch id>/<index>/<count>`: the record's place in one published batch of one partition.
    public static let batch = "fs_batch"
    /// The `loop.events` offset after the batch: every state derived from earlier offsets of the
    /// same partition is in the log once the batch's last record is.
    public static let inputNext = "fs_input_next"
    /// On a state published right after applying a score request: that request's `loop.events`
    /// offset. The state is exactly what the entity's features were when the request arrived, no
    /// later event included.
    public static let requestOffset = "fs_request_offset"
}
