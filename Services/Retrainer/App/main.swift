import Retrainer
import ServiceKit

await ServiceRunner.main(RetrainerService.self)
