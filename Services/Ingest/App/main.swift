import Ingest
import ServiceKit

await ServiceRunner.main(IngestService.self)
