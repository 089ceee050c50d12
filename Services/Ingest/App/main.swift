import Ingest
import ServiceKit

Allocator.keepFreedMemory()
await ServiceRunner.main(IngestService.self)
