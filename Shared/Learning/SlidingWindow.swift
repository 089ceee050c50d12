/// How much a sliding window keeps.
public enum WindowSpan: Sendable, Equatable {
    /// The last `n` events.
    case count(Int)
    /// Events whose event time is after `newest − seconds`.
    case eventTime(seconds: Double)

    func validate() throws(LearningError) {
        switch self {
        case .count(let n) where n < 1:
            throw LearningError(.invalidConfiguration, "a count window must hold at least 1 event, not \(n)")
        case .eventTime(let seconds) where !(seconds.isFinite && seconds > 0):
            throw LearningError(.invalidConfiguration, "a time window must span a positive number of seconds, not \(seconds)")
        default: return
        }
    }
}

/// A FIFO of timestamped elements that knows what has fallen out of its span, O(1) amortized per
/// event and allocation-free once grown to its working size.
///
/// Add with ``append(_:at:)``, then take what left the window with ``popExpired()`` until it
/// returns `nil`. A time window's start is `newest event time − span`: an element at or before it
/// is late and refused on arrival; elements leave in arrival order once they are at or before it.
public struct SlidingWindow<Element: Sendable>: Sendable {
    public let span: WindowSpan
    private var elements: [Element?]
    private var times: [Double]
    private var head = 0
    private var stored = 0
    /// The latest event time seen (`-∞` before the first event).
    public private(set) var newestTime = -Double.infinity

    /// An empty window; throws if `span` is not positive.
    public init(span: WindowSpan) throws(LearningError) {
        try span.validate()
        self.span = span
        let capacity = if case .count(let n) = span { n + 1 } else { 16 }
        elements = [Element?](repeating: nil, count: capacity)
        times = [Double](repeating: 0, count: capacity)
    }

    /// The number of elements inside the window (excluding any not yet popped by ``popExpired()``).
    public var count: Int {
        if case .count(let n) = span { return min(stored, n) }
        return stored - expiredCount
    }

    /// Adds `element` at event time `time`. Returns `false`, and keeps nothing, for a late element
    /// of a time window.
    @discardableResult
    public mutating func append(_ element: Element, at time: Double = 0) -> Bool {
        if case .eventTime(let seconds) = span {
            guard time.isFinite, time > newestTime - seconds else { return false }
        }
        newestTime = max(newestTime, time)
        if stored == elements.count { grow() }
        let slot = (head + stored) % elements.count
        elements[slot] = element
        times[slot] = time
        stored += 1
        return true
    }

    /// Moves a time window's end to `time` (if later), so ``popExpired()`` returns what falls out.
    public mutating func advance(to time: Double) {
        if case .eventTime = span, time > newestTime { newestTime = time }
    }

    /// Removes and returns the oldest element if it has left the window.
    public mutating func popExpired() -> Element? {
        guard stored > 0 else { return nil }
        switch span {
        case .count(let n): guard stored > n else { return nil }
        case .eventTime(let seconds): guard times[head] <= newestTime - seconds else { return nil }
        }
        let element = elements[head]
        elements[head] = nil
        head = (head + 1) % elements.count
        stored -= 1
        return element
    }

    /// The elements in the window, oldest first.
    public var contents: [Element] {
        (0..<stored).compactMap { offset in
            let slot = (head + offset) % elements.count
            if case .count(let n) = span, offset < stored - n { return nil }
            if case .eventTime(let seconds) = span, times[slot] <= newestTime - seconds { return nil }
            return elements[slot]
        }
    }

    private var expiredCount: Int {
        guard case .eventTime(let seconds) = span else { return 0 }
        var expired = 0
        while expired < stored, times[(head + expired) % times.count] <= newestTime - seconds { expired += 1 }
        return expired
    }

    private mutating func grow() {
        let ordered = (0..<stored).map { elements[(head + $0) % elements.count] }
        let orderedTimes = (0..<stored).map { times[(head + $0) % times.count] }
        let capacity = max(16, elements.count * 2)
        elements = ordered + [Element?](repeating: nil, count: capacity - stored)
        times = orderedTimes + [Double](repeating: 0, count: capacity - stored)
        head = 0
    }
}
