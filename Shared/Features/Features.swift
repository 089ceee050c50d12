// Features: placeholder until its implementation lands.
