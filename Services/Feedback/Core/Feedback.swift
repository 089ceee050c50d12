// Feedback service logic.
