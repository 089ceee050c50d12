/// The FeedbackLoop release every service and loopctl report (`/healthz`, `loopctl status`).
public enum LoopVersion {
    /// The release, as semantic version text.
    public static let current = "0.2.0"
}
