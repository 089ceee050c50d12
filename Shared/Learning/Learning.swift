// Learning: placeholder until its implementation lands.
