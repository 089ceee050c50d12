// Storage: placeholder until its implementation lands.
