import Contracts
import Learning
import Foundation
import Hummingbird
import NIOCore
import ServiceKit

/// `GET /dashboard`: one self-contained HTML page (no external scripts, styles or fonts) with
/// inline SVG charts of the latest monitoring snapshot.
public struct Dashboard: Sendable {
    let monitor: Monitor
    let store: JoinStore
    let thresholds: DriftThresholds

    func addRoute(to router: Router<LoopRequestContext>) {
        router.get("dashboard") { _, _ in
            let html = Self.render(monitor.latest, thresholds: thresholds)
            return Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
        }
    }

    // MARK: - Rendering

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"]

    /// The page for `snapshot` (a placeholder page before the first snapshot).
    public static func render(_ snapshot: MonitorSnapshot?, thresholds: DriftThresholds) -> String {
        var body = "<h1>FeedbackLoop · feedback</h1>"
        guard let snapshot else {
            body += "<p class=\"muted\">No monitoring snapshot yet: waiting for predictions and labels.</p>"
            return page(body)
        }
        body += "<p class=\"muted\">As of event time <time data-ms=\"\(snapshot.eventTimeMs)\">\(snapshot.eventTimeMs)</time>"
            + " · champion \(snapshot.champion.map { "v\($0)" } ?? "none")</p>"
        body += "<section><h2>Quality over time (AUC, count window)</h2>\(qualityChart(snapshot))</section>"
        let champion = snapshot.versions.first { $0.version == snapshot.champion } ?? snapshot.versions.last
        body += "<section><h2>Drift per feature (PSI\(champion.map { ", " + label($0.version) } ?? ""))</h2>"
            + "\(driftChart(champion, threshold: thresholds.psi))</section>"
        body += "<section><h2>Open alerts</h2>\(alertTable(snapshot.openAlerts))</section>"
        let agreement = snapshot.counters.reviewerAgreement.map { String(format: "%.1f%%", $0 * 100) } ?? "–"
        body += "<section><h2>Review queue</h2><p class=\"big\" id=\"review-queue\">\(snapshot.reviewQueue)</p>"
            + "<p class=\"muted\">pending predictions routed to review · reviewer agreement \(agreement)</p></section>"
        body += "<section><h2>Label delay</h2>\(delayChart(snapshot.labelDelayCounts))</section>"
        body += "<section><h2>Join</h2>\(joinTable(snapshot.counters))</section>"
        return page(body)
    }

    static func label(_ version: Int64?) -> String { version.map { "v\($0)" } ?? "baseline" }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func number(_ value: Double) -> String { String(format: "%.1f", value) }

    static func qualityChart(_ snapshot: MonitorSnapshot) -> String {
        let width = 640.0, height = 220.0, left = 40.0, bottom = 20.0
        let points = snapshot.versions.flatMap { $0.history.map(\.eventTimeMs) }
        guard let first = points.min(), let last = points.max() else { return "<p class=\"muted\">No labels yet.</p>" }
        let span = Double(max(last - first, 1))
        func x(_ ms: Int64) -> Double { left + (width - left - 10) * Double(ms - first) / span }
        func y(_ auc: Double) -> Double { (height - bottom) - (height - bottom - 10) * min(max((auc - 0.5) / 0.5, 0), 1) }
        var svg = "<svg viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\">"
        for tick in [0.5, 0.75, 1.0] {
            svg += "<line x1=\"\(left)\" x2=\"\(width - 10)\" y1=\"\(number(y(tick)))\" y2=\"\(number(y(tick)))\" class=\"grid\"/>"
                + "<text x=\"4\" y=\"\(number(y(tick) + 4))\">\(tick)</text>"
        }
        // Promotions inside the chart, and the last one before it (the current champion) at its left edge.
        var shown: [(Int64, Int64)] = snapshot.promotions.filter { $0.eventTimeMs >= first }.map { ($0.eventTimeMs, $0.version) }
        if let current = snapshot.promotions.last(where: { $0.eventTimeMs < first }) { shown.append((first, current.version)) }
        for promotion in shown {
            let px = number(x(promotion.0))
            svg += "<line x1=\"\(px)\" x2=\"\(px)\" y1=\"10\" y2=\"\(height - bottom)\" class=\"promotion\"/>"
                + "<text x=\"\(px)\" y=\"10\" class=\"marker\">▲ v\(promotion.1)</text>"
        }
        var legend = ""
        for (index, report) in snapshot.versions.enumerated() {
            let color = palette[index % palette.count]
            let path = report.history.compactMap { point in point.countAUC.map { "\(number(x(point.eventTimeMs))),\(number(y($0)))" } }
            if !path.isEmpty {
                svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path.joined(separator: " "))\"/>"
            }
            legend += "<span style=\"color:\(color)\">■ \(label(report.version))</span> "
        }
        return svg + "</svg><p>\(legend)</p>"
    }

    static func driftChart(_ report: VersionReport?, threshold: Double) -> String {
        guard let report, !(report.drift.isEmpty && report.scoreDrift == nil) else {
            return "<p class=\"muted\">No training baseline known yet (waiting for loop.models).</p>"
        }
        let rows = report.drift + (report.scoreDrift.map { [$0] } ?? [])
        let width = 640.0, rowHeight = 18.0, left = 170.0
        let largest = max(rows.map(\.psi).max() ?? 0, threshold * 1.5)
        func w(_ psi: Double) -> Double { (width - left - 60) * min(psi / largest, 1) }
        let height = rowHeight * Double(rows.count) + 10
        var svg = "<svg viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\">"
        for (index, row) in rows.enumerated() {
            let top = Double(index) * rowHeight + 4
            let color = row.psi > threshold ? "#d62728" : "#1f77b4"
            svg += "<text x=\"0\" y=\"\(number(top + 12))\">\(escape(row.feature))</text>"
                + "<rect x=\"\(left)\" y=\"\(number(top))\" width=\"\(number(w(row.psi)))\" height=\"\(rowHeight - 4)\" fill=\"\(color)\"/>"
                + "<text x=\"\(number(left + w(row.psi) + 4))\" y=\"\(number(top + 12))\">\(String(format: "%.3f", row.psi))</text>"
        }
        let tx = number(left + w(threshold))
        svg += "<line x1=\"\(tx)\" x2=\"\(tx)\" y1=\"0\" y2=\"\(height)\" class=\"threshold\"/>"
        return svg + "</svg>"
    }

    static func alertTable(_ alerts: [MonitoringRecord]) -> String {
        guard !alerts.isEmpty else { return "<p class=\"muted\" id=\"alerts\">No open alerts.</p>" }
        var table = "<table id=\"alerts\"><tr><th>kind</th><th>version</th><th>feature</th><th>value</th><th>threshold</th><th>since</th></tr>"
        for alert in alerts {
            table += "<tr><td>\(escape(alert.alertKind?.rawValue ?? ""))</td><td>\(label(alert.modelVersion))</td>"
                + "<td>\(escape(alert.feature ?? "–"))</td><td>\(alert.value.map { String(format: "%.3f", $0) } ?? "–")</td>"
                + "<td>\(alert.threshold.map { String(format: "%.3f", $0) } ?? "–")</td>"
                + "<td><time data-ms=\"\(alert.eventTimeMs)\">\(alert.eventTimeMs)</time></td></tr>"
        }
        return table + "</table>"
    }

    static func delayChart(_ counts: [Int]) -> String {
        let names = ["≤1m", "≤5m", "≤15m", "≤1h", "≤6h", "≤1d", "≤7d", ">7d"]
        let width = 640.0, height = 160.0, bottom = 20.0
        let largest = Double(max(counts.max() ?? 0, 1))
        let barWidth = width / Double(max(counts.count, 1))
        var svg = "<svg viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\">"
        for (index, count) in counts.enumerated() {
            let barHeight = (height - bottom - 14) * Double(count) / largest
            let x = Double(index) * barWidth
            svg += "<rect x=\"\(number(x + 4))\" y=\"\(number(height - bottom - barHeight))\" width=\"\(number(barWidth - 8))\""
                + " height=\"\(number(barHeight))\" fill=\"#2ca02c\"/>"
                + "<text x=\"\(number(x + 6))\" y=\"\(number(height - 4))\">\(index < names.count ? names[index] : "")</text>"
                + "<text x=\"\(number(x + 6))\" y=\"\(number(height - bottom - barHeight - 2))\">\(count)</text>"
        }
        return svg + "</svg>"
    }

    static func joinTable(_ counters: JoinCounters) -> String {
        "<table>" + JoinCounters.fields.map { "<tr><td>\($0.name)</td><td>\(counters[keyPath: $0.path])</td></tr>" }.joined()
            + "</table>"
    }

    static func page(_ body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>FeedbackLoop feedback</title>
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <style>
        body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 60em; }
        section { margin-bottom: 1.5em; } h2 { font-size: 1.1em; border-bottom: 1px solid #ccc; }
        svg text { font-size: 11px; fill: #333; } .grid { stroke: #ddd; } .threshold { stroke: #d62728; stroke-dasharray: 4 3; }
        .promotion { stroke: #9467bd; stroke-dasharray: 2 2; } .marker { fill: #9467bd; }
        .muted { color: #777; } .big { font-size: 2em; margin: 0; } table { border-collapse: collapse; }
        td, th { border: 1px solid #ddd; padding: 2px 8px; font-size: 0.9em; }
        </style></head>
        <body>
        \(body)
        <script>
        window.addEventListener('error', function () { document.documentElement.setAttribute('data-script-error', 'yes'); });
        document.querySelectorAll('time[data-ms]').forEach(function (element) {
          var ms = Number(element.getAttribute('data-ms'));
          if (ms > 0) { element.textContent = new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z'; }
        });
        document.documentElement.setAttribute('data-rendered', 'yes');
        </script>
        </body></html>
        """
    }
}
