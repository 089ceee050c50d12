import ArgumentParser
import Loopctl

await Loopctl.main()
