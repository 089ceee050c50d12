// TestSupport: placeholder until its implementation lands.
