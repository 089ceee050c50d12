import Feedback
import ServiceKit

await ServiceRunner.main(FeedbackService.self)
