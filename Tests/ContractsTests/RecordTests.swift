import Contracts
import Testing

@Suite("Topic records")
struct RecordTests {
    let prediction = Prediction(
        requestId: "r-1", entity: "nsw", eventTimeMs: 1_700_000_000_123, modelVersion: 3, role: .champion,
        score: 0.73, decision: true, route: .review, reasons: ["review_band"],
        features: [FeatureValue(name: "nswprice_mean_24h", value: 0.061), FeatureValue(name: "nswprice_last", value: nil)],
        explanation: [Contribution(feature: "nswprice_mean_24h", contribution: -0.4)],
        challengers: [ChallengerScore(modelVersion: 4, role: .shadow, score: 0.7)],
        featuresAsOfMs: 1_700_000_000_000, featureAgeSeconds: 0.123, latencyMs: 0.4, traceparent: nil)

    @Test("every record survives canonical JSON bytes unchanged")
    func roundTrips() throws {
        #expect(try Prediction(bytes: prediction.bytes) == prediction)
        let labeled = LabeledExample(prediction: prediction, label: false, labelSource: .outcome, labelDelaySeconds: 1800, value: 2.5)
        #expect(try LabeledExample(bytes: labeled.bytes) == labeled)
        let model = ModelVersionRecord(
            version: 2, status: .champion, parent: 1, trigger: "event_time", createdAtMs: 5, reasons: ["auc +0.01"],
            lineage: ["examples": 4032], artifact: ["kind": "logistic_regression"], card: "# Model 2")
        #expect(try ModelVersionRecord(bytes: model.bytes) == model)
        let registry = RegistryState(champion: 2, canary: 3, canaryShare: 0.1, shadows: [4], history: [1], revision: 7)
        #expect(try RegistryState(bytes: registry.bytes) == registry)
        let letter = DeadLetter(
            reason: "out_of_range", field: "data.nswprice", message: "7 is above the maximum 1", origin: "kafka",
            topic: "loop.events.raw", partition: 2, offset: 41, body: "{}", bodyEncoding: "utf8",
            headers: ["ce_id": "x"], rejectedAtMs: 9)
        #expect(try DeadLetter(bytes: letter.bytes) == letter)
        let audit = AuditEntry(timeMs: 1, service: "retrainer", actor: "ops", action: "model.promoted", target: "model.2")
        #expect(try AuditEntry(bytes: audit.bytes) == audit)
        let alert = MonitoringRecord(
            kind: .alert, modelVersion: 2, eventTimeMs: 3, alertKind: .drift, alertState: .open, alertId: "drift:2:nswprice",
            feature: "nswprice", value: 0.4, threshold: 0.25)
        #expect(try MonitoringRecord(bytes: alert.bytes) == alert)
    }

    @Test("a record names the field that breaks its contract")
    func fieldErrors() throws {
        var json = prediction.json.objectValue!
        json["route"] = "sideways"
        let error = #expect(throws: RecordError.self) { try Prediction(json: .object(json)) }
        #expect(error?.path == "route")
        json = prediction.json.objectValue!
        json["features"] = [["name": "x", "value": "high"]]
        let nested = #expect(throws: RecordError.self) { try Prediction(json: .object(json)) }
        #expect(nested?.path == "features[0].value")
    }

    @Test("readers accept the current and previous schema version only")
    func schemaVersions() throws {
        var json = prediction.json.objectValue!
        json["schemaVersion"] = 2
        let error = #expect(throws: RecordError.self) { try Prediction(json: .object(json)) }
        #expect(error?.path == "schemaVersion")
        json["schemaVersion"] = nil
        #expect(throws: RecordError.self) { try Prediction(json: .object(json)) }
    }
}
