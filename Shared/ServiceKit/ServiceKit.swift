// ServiceKit: placeholder until its implementation lands.
