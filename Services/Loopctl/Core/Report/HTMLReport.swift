import Foundation

/// The end-of-replay report as one self-contained HTML page: inline CSS and inline SVG charts (no
/// scripts, fonts or other external resources), readable offline.
public enum HTMLReport {
    /// The page for `summary`; `title` heads it.
    public static func html(_ summary: ReplaySummary, title: String = "FeedbackLoop replay report") -> String {
        var body = "<h1>\(escape(title))</h1>\n"
        body += "<h2>Served quality over time</h2>\n"
        body += "<p>Rolling ROC AUC and accuracy of the served predictions over windows of \(Format.count(summary.window)) "
            + "labeled examples, by event time (prequential: each prediction was scored before its label was known). "
            + "Vertical lines mark a version starting to decide as champion.</p>\n"
        body += qualityChart(summary)
        body += "<h2>Drift per feature</h2>\n"
        body += driftSection(summary)
        body += "<h2>Summary</h2>\n"
        body += summaryTables(summary)
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
            <style>
            body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
            table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
            th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}svg{background:#fff;border:1px solid #ddd}
            .legend span{display:inline-block;margin-right:1.2em}.swatch{display:inline-block;width:1.2em;height:.25em;vertical-align:middle;margin-right:.3em}
            </style></head><body>
            \(body)</body></html>

            """
    }

    // MARK: - Charts

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

    /// A line chart: x is event time (ms), y a value; lines, dashed horizontal references and labeled vertical markers.
    struct Chart {
        struct Line { var name: String; var color: String; var points: [(x: Int64, y: Double)] }
        struct Reference { var name: String; var color: String; var y: Double }
        struct Marker { var label: String; var x: Int64 }
        var lines: [Line]
        var references: [Reference] = []
        var markers: [Marker] = []
        var yRange: ClosedRange<Double>
        var yLabel: String

        func svg(width: Double = 960, height: Double = 340) -> String {
            let (left, right, top, bottom) = (56.0, 16.0, 24.0, 40.0)
            let xs = lines.flatMap { $0.points.map(\.x) } + markers.map(\.x)
            guard let minX = xs.min(), let maxX = xs.max() else { return "<p>No data.</p>\n" }
            let spanX = Double(max(1, maxX - minX))
            let spanY = max(1e-9, yRange.upperBound - yRange.lowerBound)
            func px(_ x: Int64) -> Double { left + Double(x - minX) / spanX * (width - left - right) }
            func py(_ y: Double) -> Double {
                let clamped = min(max(y, yRange.lowerBound), yRange.upperBound)
                return top + (1 - (clamped - yRange.lowerBound) / spanY) * (height - top - bottom)
            }
            func f(_ value: Double) -> String { String(format: "%.1f", value) }
            var svg = "<svg width=\"\(Int(width))\" height=\"\(Int(height))\" "
                + "viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" font-size=\"11\">\n"
            for index in 0...5 {
                let y = yRange.lowerBound + spanY * Double(index) / 5
                svg += "<line x1=\"\(f(left))\" x2=\"\(f(width - right))\" y1=\"\(f(py(y)))\" y2=\"\(f(py(y)))\" stroke=\"#eee\"/>"
                svg += "<text x=\"\(f(left - 6))\" y=\"\(f(py(y) + 4))\" text-anchor=\"end\">\(String(format: "%.2f", y))</text>\n"
            }
            for index in 0...4 {
                let x = minX + Int64(spanX * Double(index) / 4)
                let time = Format.time(ms: x)
                let label = spanX < 4 * 86_400_000 ? time.prefix(16).replacingOccurrences(of: "T", with: " ") : String(time.prefix(10))
                let anchor = index == 0 ? "start" : index == 4 ? "end" : "middle"
                svg += "<text x=\"\(f(px(x)))\" y=\"\(f(height - bottom + 16))\" text-anchor=\"\(anchor)\">\(label)</text>\n"
            }
            svg += "<text x=\"14\" y=\"\(f(top + (height - top - bottom) / 2))\" transform=\"rotate(-90 14 \(f(top + (height - top - bottom) / 2)))\" "
                + "text-anchor=\"middle\">\(escape(yLabel))</text>\n"
            svg += "<text x=\"\(f(width / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\">event time (UTC)</text>\n"
            svg += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(width - left - right))\" height=\"\(f(height - top - bottom))\" "
                + "fill=\"none\" stroke=\"#999\"/>\n"
            for reference in references {
                svg += "<line x1=\"\(f(left))\" x2=\"\(f(width - right))\" y1=\"\(f(py(reference.y)))\" y2=\"\(f(py(reference.y)))\" "
                    + "stroke=\"\(reference.color)\" stroke-dasharray=\"6 4\"><title>\(escape(reference.name))</title></line>\n"
            }
            for marker in markers {
                svg += "<line x1=\"\(f(px(marker.x)))\" x2=\"\(f(px(marker.x)))\" y1=\"\(f(top))\" y2=\"\(f(height - bottom))\" "
                    + "stroke=\"#555\" stroke-dasharray=\"2 3\"><title>\(escape(marker.label))</title></line>"
                svg += "<text x=\"\(f(px(marker.x) + 3))\" y=\"\(f(top - 6))\">\(escape(marker.label))</text>\n"
            }
            for line in lines where !line.points.isEmpty {
                let path = line.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
                svg += "<polyline fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"1.6\" points=\"\(path)\">"
                    + "<title>\(escape(line.name))</title></polyline>\n"
                if line.points.count == 1, let point = line.points.first {
                    svg += "<circle cx=\"\(f(px(point.x)))\" cy=\"\(f(py(point.y)))\" r=\"3\" fill=\"\(line.color)\"/>\n"
                }
            }
            svg += "</svg>\n"
            var legend = "<div class=\"legend\">"
            for line in lines {
                legend += "<span><i class=\"swatch\" style=\"background:\(line.color)\"></i>\(escape(line.name))</span>"
            }
            for reference in references {
                legend += "<span><i class=\"swatch\" style=\"background:\(reference.color)\"></i>\(escape(reference.name)) (dashed)</span>"
            }
            return svg + legend + "</div>\n"
        }
    }

    static func qualityChart(_ summary: ReplaySummary) -> String {
        let auc = summary.qualitySeries.compactMap { point in point.auc.map { (x: point.eventTimeMs, y: $0) } }
        let accuracy = summary.qualitySeries.map { (x: $0.eventTimeMs, y: $0.accuracy) }
        let values = auc.map(\.y) + accuracy.map(\.y) + [summary.constantBaseline.accuracy ?? 0.5, 0.5]
        let low = max(0, ((values.min() ?? 0.5) * 10).rounded(.down) / 10)
        var references = [Chart.Reference(name: "constant baseline AUC 0.5", color: "#1f77b4", y: 0.5)]
        if let accuracy = summary.constantBaseline.accuracy {
            references.append(Chart.Reference(name: "constant baseline accuracy", color: "#d62728", y: accuracy))
        }
        let chart = Chart(
            lines: [Chart.Line(name: "rolling ROC AUC", color: "#1f77b4", points: auc),
                    Chart.Line(name: "rolling accuracy", color: "#d62728", points: accuracy)],
            references: references,
            markers: summary.promotions.map { Chart.Marker(label: "v\($0.version)", x: $0.eventTimeMs) },
            yRange: min(low, 0.5)...1, yLabel: "AUC / accuracy")
        return summary.qualitySeries.isEmpty ? "<p>No labeled predictions.</p>\n" : chart.svg()
    }

    static func driftSection(_ summary: ReplaySummary) -> String {
        let driftAlerts = summary.alerts.filter { $0.kind == "drift" }
        var html = ""
        if !summary.psiByFeature.isEmpty {
            let features = summary.psiByFeature.keys.sorted()
            let lines = features.enumerated().map { index, feature in
                Chart.Line(name: feature, color: palette[index % palette.count],
                           points: summary.psiByFeature[feature]!.map { (x: $0.eventTimeMs, y: $0.value) })
            }
            let top = (summary.psiByFeature.values.flatMap { $0.map(\.value) } + [summary.psiThreshold ?? 0]).max() ?? 0
            html += "<p>Population stability index of each feature against its reference, from the monitoring snapshots.</p>\n"
            html += Chart(
                lines: lines,
                references: summary.psiThreshold.map { [Chart.Reference(name: "PSI alert threshold", color: "#555", y: $0)] } ?? [],
                markers: driftAlerts.map { Chart.Marker(label: "⚠ " + ($0.feature ?? $0.alertId), x: $0.eventTimeMs) },
                yRange: 0...max(0.1, top * 1.1), yLabel: "PSI").svg()
        } else {
            html += "<p>No PSI figures in the monitoring snapshots.</p>\n"
        }
        var byFeature: [String: [ReplaySummary.Alert]] = [:]
        for alert in driftAlerts { byFeature[alert.feature ?? "(none)", default: []].append(alert) }
        var rows: [[String]] = []
        for feature in Set(summary.psiByFeature.keys).union(byFeature.keys).sorted() {
            let points = summary.psiByFeature[feature] ?? []
            let alerts = byFeature[feature] ?? []
            rows.append([
                feature, Format.number(points.last?.value), Format.number(points.map(\.value).max()),
                Format.count(alerts.count), Format.number(alerts.compactMap(\.value).max()),
            ])
        }
        if !rows.isEmpty {
            html += table(["feature", "latest PSI", "max PSI", "drift alerts", "max alert value"], rows, numeric: [1, 2, 3, 4])
        }
        return html
    }

    // MARK: - Tables

    static func summaryTables(_ summary: ReplaySummary) -> String {
        func breakdown(_ counts: [String: Int]) -> String {
            counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key) \(Format.count($0.value))" }
                .joined(separator: ", ")
        }
        var html = table(["", "count", "breakdown"], [
            ["events", Format.count(summary.events), breakdown(summary.eventsByType)],
            ["predictions", Format.count(summary.predictions),
             "by route: " + breakdown(summary.predictionsByRoute) + "; by model: " + breakdown(summary.predictionsByModel)],
            ["labels", Format.count(summary.labels), breakdown(summary.labelsBySource)],
            ["dead letters", Format.count(summary.deadLetters), breakdown(summary.deadLettersByReason)],
            ["drift and quality alerts raised", Format.count(summary.alerts.count),
             breakdown(ReplaySummary.counts(summary.alerts.map(\.kind)))],
        ], numeric: [1])
        var quality = [ReplaySummary.row("served (all deciding roles)", summary.served)]
        for (name, value) in summary.servedByModel.sorted(by: { ReplaySummary.modelLabelsAscending($0.key, $1.key) }) { quality.append(ReplaySummary.row(name, value)) }
        quality.append(ReplaySummary.row("baseline policy (role baseline)", summary.baselinePolicy))
        quality.append(ReplaySummary.row(
            "constant baseline (always \(summary.constantBaselineDecision ? "positive" : "negative"))", summary.constantBaseline))
        html += "<h3>Prequential quality</h3>\n" + table(["policy", "labeled", "ROC AUC", "accuracy"], quality, numeric: [1, 2, 3])
        html += "<h3>Model versions</h3>\n"
        html += summary.models.isEmpty ? "<p>None.</p>\n" : table(
            ["version", "parent", "trigger", "holdout AUC", "champion holdout AUC", "outcome", "reasons"],
            summary.models.map {
                ["v\($0.version)", $0.parent.map { "v\($0)" } ?? "-", $0.trigger, Format.number($0.holdoutAUC),
                 Format.number($0.championHoldoutAUC), $0.outcome, $0.reasons.joined(separator: "; ")]
            }, numeric: [3, 4])
        html += "<h3>Alerts raised</h3>\n"
        html += summary.alerts.isEmpty ? "<p>None.</p>\n" : table(
            ["event time", "kind", "feature", "value", "threshold", "id"],
            summary.alerts.map {
                [Format.time(ms: $0.eventTimeMs), $0.kind, $0.feature ?? "-", Format.number($0.value), Format.number($0.threshold), $0.alertId]
            }, numeric: [3, 4])
        return html
    }

    static func table(_ header: [String], _ rows: [[String]], numeric: Set<Int> = []) -> String {
        var html = "<table><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr>\n"
        for row in rows {
            html += "<tr>" + row.enumerated().map { index, cell in
                numeric.contains(index) ? "<td class=\"n\">\(escape(cell))</td>" : "<td>\(escape(cell))</td>"
            }.joined() + "</tr>\n"
        }
        return html + "</table>\n"
    }

    /// `text` with HTML's special characters escaped.
    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }
}
