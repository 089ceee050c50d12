import ArgumentParser
import Loopctl

/// The `loopctl` executable: parses the command line and runs the chosen command.
@main
enum LoopctlApp {
    static func main() async {
        await Loopctl.main(nil)
    }
}
