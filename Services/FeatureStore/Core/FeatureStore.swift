// FeatureStore service logic.
