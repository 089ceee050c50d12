import Scorer
import ServiceKit

await ServiceRunner.main(ScorerService.self)
