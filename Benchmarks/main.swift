print("loop-bench: not built yet")
