import ArgumentParser

/// loopctl: the operator CLI of FeedbackLoop.
public struct Loopctl: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "loopctl", abstract: "Operate a FeedbackLoop deployment.")
    public init() {}
}
