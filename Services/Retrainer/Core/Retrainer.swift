// Retrainer service logic.
