// Scorer service logic.
