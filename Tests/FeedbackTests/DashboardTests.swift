import Contracts
import Feedback
import Foundation
import Testing

@Suite("dashboard")
struct DashboardTests {
    static let chromium = "/usr/bin/chromium"

    /// A snapshot with two versions, drift, an open alert, a promotion and label delays.
    static func snapshot() throws -> MonitorSnapshot {
        let monitor = try MonitorTests.monitor(windowCount: 300, minimumSamples: 50)
        monitor.register(model: try MonitorTests.model(version: 1))
        monitor.register(registry: RegistryState(champion: 1, canary: nil, canaryShare: 0, shadows: [2], history: [], revision: 1))
        for round in 0..<4 {
            let served = MonitorTests.predictions(200, from: round * 200) { i in round == 3 ? 0.97 : Double(i % 100) / 100 }
            monitor.observe(predictions: served)
            monitor.observe(labeled: served.enumerated().map { index, p in
                var withShadow = p
                withShadow.challengers = [ChallengerScore(modelVersion: 2, role: .shadow, score: 1 - p.score)]
                return LabeledExample(prediction: withShadow, label: index % 3 == 0, labelSource: .outcome,
                                      labelDelaySeconds: Double(index * 97))
            })
            _ = monitor.snapshot(counters: JoinCounters(), reviewQueue: 7)
        }
        return try #require(monitor.latest)
    }

    @Test("the page is self-contained: inline SVG charts, no external resources")
    func selfContained() throws {
        let html = Dashboard.render(try Self.snapshot(), thresholds: MonitorTests.thresholds)
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.components(separatedBy: "<svg").count - 1 >= 3)
        #expect(!html.contains("src=") && !html.contains("href=") && !html.contains("@import") && !html.contains("url("))
        #expect(html.contains("Open alerts") && html.contains("drift") && html.contains("review-queue\">7<"))
        #expect(html.contains("▲ v1"), "promotion marker")
        #expect(Dashboard.render(nil, thresholds: MonitorTests.thresholds).contains("No monitoring snapshot yet"))
    }

    @Test("headless Chromium loads the page without script errors and takes a screenshot",
          .enabled(if: FileManager.default.isExecutableFile(atPath: chromium)))
    func chromiumRenders() async throws {
        let directory = try temporaryDirectory("dashboard")
        let page = directory + "/dashboard.html"
        try Dashboard.render(try Self.snapshot(), thresholds: MonitorTests.thresholds)
            .write(toFile: page, atomically: true, encoding: .utf8)
        let common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                      "--user-data-dir=\(directory)/profile", "--window-size=1000,1600"]
        let dom = try Self.run(common + ["--dump-dom", "file://\(page)"])
        #expect(dom.contains("data-rendered=\"yes\""), "the page script did not finish: \(dom.prefix(300))")
        #expect(!dom.contains("data-script-error=\"yes\""))
        #expect(dom.contains("<time data-ms=") && dom.contains("Z</time>"), "timestamps were formatted by the script")
        let screenshot = directory + "/dashboard.png"
        _ = try Self.run(common + ["--screenshot=\(screenshot)", "file://\(page)"])
        let png = try Data(contentsOf: URL(fileURLWithPath: screenshot))
        #expect(png.count > 10_000 && png.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))
    }

    /// Runs Chromium and returns its standard output.
    static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: chromium)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
