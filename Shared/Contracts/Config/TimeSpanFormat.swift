enum TimeSpanFormat {
    static func format(_ span: TimeSpan) -> String { "\(span.seconds)s" }
}
