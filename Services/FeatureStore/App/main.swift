import FeatureStore
import ServiceKit

await ServiceRunner.main(FeatureStoreService.self)
