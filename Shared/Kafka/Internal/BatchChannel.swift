import Foundation

/// A bounded hand-off from a polling thread to one async reader. `push` blocks the polling thread
/// while the buffer is full (back-pressure into librdkafka); `next` suspends the reader while it is
/// empty.
final class BatchChannel<Element: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var buffer: [Element] = []
    private var head = 0
    private let capacity: Int
    private var waiter: CheckedContinuation<Element?, any Error>?
    private var finished = false
    private var failure: KafkaError?

    init(capacity: Int) { self.capacity = capacity }

    /// Blocks while the buffer is full. Returns `false` once the channel is finished.
    func push(_ element: Element) -> Bool {
        condition.lock()
        while buffer.count - head >= capacity && !finished { condition.wait() }
        if finished {
            condition.unlock()
            return false
        }
        if let waiter {
            self.waiter = nil
            condition.unlock()
            waiter.resume(returning: element)
            return true
        }
        buffer.append(element)
        condition.unlock()
        return true
    }

    /// Ends the channel: the reader gets what is buffered, then `error` (if any), then the end.
    func finish(_ error: KafkaError? = nil) {
        condition.lock()
        if !finished {
            finished = true
            failure = error
        }
        let waiter = self.waiter
        self.waiter = nil
        let failure = self.failure
        self.failure = waiter != nil ? nil : failure
        condition.broadcast()
        condition.unlock()
        if let waiter {
            if let failure { waiter.resume(throwing: failure) } else { waiter.resume(returning: nil) }
        }
    }

    /// Rewrites buffered elements (e.g. drops records of revoked partitions); `nil` removes one.
    func rewriteBuffered(_ transform: (Element) -> Element?) {
        condition.lock()
        buffer = buffer[head...].compactMap(transform)
        head = 0
        condition.broadcast()
        condition.unlock()
    }

    /// The next element, or `nil` once finished and drained.
    func next() async throws -> Element? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Element?, any Error>) in
                condition.lock()
                if head < buffer.count {
                    let element = buffer[head]
                    head += 1
                    if head > 64 && head * 2 > buffer.count {
                        buffer.removeFirst(head)
                        head = 0
                    }
                    condition.broadcast()
                    condition.unlock()
                    continuation.resume(returning: element)
                } else if finished {
                    let failure = self.failure
                    self.failure = nil
                    condition.unlock()
                    if let failure { continuation.resume(throwing: failure) } else { continuation.resume(returning: nil) }
                } else if Task.isCancelled {
                    condition.unlock()
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiter = continuation
                    condition.unlock()
                }
            }
        } onCancel: {
            condition.lock()
            let waiter = self.waiter
            self.waiter = nil
            condition.unlock()
            waiter?.resume(throwing: CancellationError())
        }
    }
}
